//! Timers kept in memory: what is set, for when, and for which deadline.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::ports::{TimerError, TimerKind, Timers};

/// (session, kind) → (at, deadline).
type Set = BTreeMap<(String, &'static str), (i64, i64)>;

#[derive(Default)]
pub struct FakeTimers {
    set: Mutex<Set>,
    failing: Mutex<Option<TimerError>>,
}

impl FakeTimers {
    /// Every request fails with `error` from now on.
    pub fn fail(&self, error: TimerError) {
        *self.failing.lock().unwrap() = Some(error);
    }

    pub fn get(&self, sid: &str, kind: TimerKind) -> Option<(i64, i64)> {
        self.set
            .lock()
            .unwrap()
            .get(&(sid.to_owned(), kind.as_str()))
            .copied()
    }

    pub fn all(&self) -> Vec<(String, &'static str, i64, i64)> {
        self.set
            .lock()
            .unwrap()
            .iter()
            .map(|((sid, kind), (at, deadline))| (sid.clone(), *kind, *at, *deadline))
            .collect()
    }

    fn check(&self) -> Result<(), TimerError> {
        match &*self.failing.lock().unwrap() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Timers for FakeTimers {
    async fn set(
        &self,
        session_sid: &str,
        kind: TimerKind,
        at: i64,
        deadline: i64,
    ) -> Result<(), TimerError> {
        self.check()?;
        self.set
            .lock()
            .unwrap()
            .insert((session_sid.to_owned(), kind.as_str()), (at, deadline));
        Ok(())
    }

    async fn cancel(&self, session_sid: &str, kind: TimerKind) -> Result<(), TimerError> {
        self.check()?;
        self.set
            .lock()
            .unwrap()
            .remove(&(session_sid.to_owned(), kind.as_str()));
        Ok(())
    }
}
