//! What every source's reading thread shares: the events it hands out and
//! the handle that stops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

/// Events waiting for the origin; a source that gets this far ahead waits
/// (a FIFO's writer then waits too). Each audio event is one read (a few
/// tens of milliseconds at most).
pub(crate) const QUEUED_EVENTS: usize = 8;

/// What a source's thread says.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// Interleaved samples at the stream's rate and channels.
    Audio(Vec<f32>),
    /// Something went wrong and the source carries on (reconnecting,
    /// reopening): for the log and the API.
    Problem(String),
    /// The source ended for good, and why (the program exited, the file ended).
    Ended(String),
}

/// A source's reading thread, stopped when dropped.
pub struct RunningSource {
    events: Receiver<SourceEvent>,
    stop: Arc<AtomicBool>,
    rate: u32,
    channels: u16,
    /// Wakes a thread blocked in a read (kills a program, writes to a FIFO).
    waker: Option<Box<dyn FnMut() + Send>>,
}

impl std::fmt::Debug for RunningSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSource")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// The thread's side of a [`RunningSource`].
pub(crate) struct SourceThread {
    pub(crate) events: SyncSender<SourceEvent>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl SourceThread {
    /// Hands `event` over, waiting while the queue is full; false once the
    /// source is stopped or dropped.
    pub(crate) fn send(&self, event: SourceEvent) -> bool {
        !self.stopped() && self.events.send(event).is_ok()
    }

    /// Whether the source was stopped.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `d` in small steps; false if stopped meanwhile.
    pub(crate) fn sleep(&self, d: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        !self.stopped()
    }
}

impl RunningSource {
    /// A source at `rate` and `channels` and its thread's side.
    pub(crate) fn new(rate: u32, channels: u16) -> (Self, SourceThread) {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUED_EVENTS);
        let stop = Arc::new(AtomicBool::new(false));
        (
            Self {
                events: rx,
                stop: Arc::clone(&stop),
                rate,
                channels,
                waker: None,
            },
            SourceThread { events: tx, stop },
        )
    }

    pub(crate) fn set_waker(&mut self, waker: Box<dyn FnMut() + Send>) {
        self.waker = Some(waker);
    }

    /// The stream's frames per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The stream's channels.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The next event if one waits; `Ended` once the thread is gone.
    pub fn try_next(&self) -> Option<SourceEvent> {
        match self.events.try_recv() {
            Ok(event) => Some(event),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(SourceEvent::Ended("the source's reader stopped".into()))
            }
        }
    }

    /// Stops the thread (it ends at its next wake; a blocked read is woken).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a sender waiting on a full queue.
        while self.events.try_recv().is_ok() {}
        if let Some(waker) = self.waker.as_mut() {
            waker();
        }
    }
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        self.stop();
    }
}
