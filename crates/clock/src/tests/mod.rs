//! Sans-IO test harness: whole swarms in the simulator, asserting behaviour.
