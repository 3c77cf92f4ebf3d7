//! The two timelines a node deals with, kept apart by type.
//!
//! [`LocalMicros`] is this node's monotonic clock; [`SwarmMicros`] is the
//! shared swarm timeline. Mixing them up is the classic sync bug, so they are
//! distinct newtypes and only explicit conversions (through a swarm clock)
//! move a value from one to the other. Wall-clock time never appears here: it
//! is for display only.

use serde::{Deserialize, Serialize};
use std::ops::{Add, Sub};

/// Microseconds on this node's local monotonic clock.
///
/// The origin is arbitrary (for example the instant the process started); only
/// differences between two values of the same node mean anything.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct LocalMicros(pub i64);

/// Microseconds on the swarm's shared timeline.
///
/// Every node maps its [`LocalMicros`] onto this timeline; playback instants
/// and flashes are expressed in it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SwarmMicros(pub i64);

macro_rules! timeline_ops {
    ($t:ident) => {
        impl $t {
            /// The raw microsecond count.
            pub const fn as_micros(self) -> i64 {
                self.0
            }

            /// `self + micros`, saturating at the ends of the range.
            pub const fn saturating_add_micros(self, micros: i64) -> Self {
                Self(self.0.saturating_add(micros))
            }

            /// `self - other` in microseconds, saturating at the ends of the range.
            pub const fn saturating_micros_since(self, other: Self) -> i64 {
                self.0.saturating_sub(other.0)
            }
        }

        impl Add<i64> for $t {
            type Output = $t;
            fn add(self, micros: i64) -> $t {
                self.saturating_add_micros(micros)
            }
        }

        impl Sub<$t> for $t {
            type Output = i64;
            fn sub(self, other: $t) -> i64 {
                self.saturating_micros_since(other)
            }
        }
    };
}

timeline_ops!(LocalMicros);
timeline_ops!(SwarmMicros);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(LocalMicros(i64::MAX) + 5, LocalMicros(i64::MAX));
        assert_eq!(SwarmMicros(i64::MIN) - SwarmMicros(1), i64::MIN);
        assert_eq!(SwarmMicros(10) - SwarmMicros(4), 6);
    }
}
