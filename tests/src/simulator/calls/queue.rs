//! The event queue: every job a call needs happens at an instant of virtual time, and
//! jobs due at the same instant run in the order they were queued.

use std::cmp::{Ordering, Reverse};

use time::OffsetDateTime;

use super::{Fetch, Purpose, State};
use crate::simulator::twiml::Dial;

#[derive(Clone, Debug)]
pub enum Job {
    /// An outbound leg leaves the queue and rings its phone.
    Dispatch(String),
    Answer(String),
    RingTimeout(String),
    PhoneHangUp(String),
    TimeLimit(String, OffsetDateTime),
    /// Run the leg's next verb (or next `<Gather>` prompt verb).
    Step(String, u64),
    GatherDone {
        call: String,
        generation: u64,
        digits: String,
    },
    DialEnded {
        parent: String,
        generation: u64,
        dial: Box<Dial>,
        params: Vec<(String, String)>,
    },
    Fetch(Box<Fetch>),
    /// A conference leg's `<Dial timeLimit>` is up.
    DialTimeLimit {
        call: String,
        join: u64,
    },
    /// The next verb of hold music or of an announcement.
    SideStep(u64),
    /// A periodic hook registered with `Simulator::every`.
    Timer(usize),
}

#[derive(Debug)]
pub struct Scheduled {
    pub at: OffsetDateTime,
    seq: u64,
    pub job: Job,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Time order; jobs due at the same instant run in the order they were queued.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl State {
    pub fn schedule(&mut self, at: OffsetDateTime, job: Job) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            job,
        }));
    }

    /// The earliest job due at or before `until`.
    pub fn pop_due(&mut self, until: OffsetDateTime) -> Option<Scheduled> {
        if self.queue.peek()?.0.at > until {
            return None;
        }
        self.queue.pop().map(|Reverse(s)| s)
    }

    /// No call is live and nothing more is due at `now` (e.g. the action request a
    /// Dial still makes after the caller hung up).
    pub fn idle(&self, now: OffsetDateTime) -> bool {
        !self.calls.iter().any(|c| c.status.is_live())
            && self.queue.peek().is_none_or(|Reverse(next)| next.at > now)
    }

    /// Runs one job; a returned [`Fetch`] must be performed and fed to [`Self::fetched`].
    pub fn run(&mut self, job: Job, now: OffsetDateTime) -> Option<Fetch> {
        match job {
            Job::Dispatch(sid) => self.dispatch(&sid, now),
            Job::Answer(sid) => return self.answer(&sid, now),
            Job::RingTimeout(sid) => self.ring_timeout(&sid, now),
            Job::PhoneHangUp(sid) => self.phone_hang_up(&sid, now),
            Job::TimeLimit(sid, deadline) => self.time_limit(&sid, deadline, now),
            Job::Step(sid, generation) => return self.step(&sid, generation, now),
            Job::GatherDone {
                call,
                generation,
                digits,
            } => return self.gather_done(&call, generation, digits, now),
            Job::DialEnded {
                parent,
                generation,
                dial,
                params,
            } => return self.dial_ended(&parent, generation, &dial, params, now),
            Job::Fetch(fetch) => {
                let live = match &fetch.purpose {
                    Purpose::Twiml => self.current(&fetch.call, fetch.generation).is_some(),
                    purpose => self.side_live(purpose),
                };
                return (live || !fetch.execute).then_some(*fetch);
            }
            Job::DialTimeLimit { call, join } => self.dial_time_limit(&call, join, now),
            Job::SideStep(id) => return self.side_step(id, now),
            // Timers are run by the driver, which owns the hooks.
            Job::Timer(_) => {}
        }
        None
    }
}
