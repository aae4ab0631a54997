//! Why a domain operation was refused or failed. The edge maps each to its answer once:
//! problem+json for the API (`problem`), TwiML for webhooks.

use crate::domain::ports::{CallError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A request value outside the rules (the message names it).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The session is closed or past its end: nothing more can happen in it.
    #[error("{0}")]
    SessionClosed(String),
    /// The session already has a call on the line.
    #[error("{0}")]
    CallInProgress(String),
    /// An extension asked of a session without an end to move.
    #[error("{0}")]
    NothingToExtend(String),
    /// An extension that would take the live call past the session's `max_cost`.
    #[error("{0}")]
    ExtensionPastMaxCost(String),
    /// The session changed between reading and writing (a close or another extension won).
    #[error("{0}")]
    SessionChanged(String),
    /// Every unreserved number is already used by this participant in another open session.
    #[error("{0}")]
    NoProxyNumber(String),
    /// The pool has no numbers at all.
    #[error("{0}")]
    NoNumbersInPool(String),
    /// The pool has only reserved numbers, and the request asked for none of them.
    #[error("{0}")]
    OnlyReservedNumbers(String),
    /// A participant's number is one of the pool's own proxy numbers.
    #[error("{0}")]
    ParticipantIsProxyNumber(String),
    /// The session's end would move past the furthest end a session may have.
    #[error("{0}")]
    BeyondMaximumEnd(String),
    #[error("{0}")]
    NumberNotInPool(String),
    /// The requested proxy number already routes this participant in another open session.
    #[error("{0}")]
    IdentifierConflict(String),
    #[error("{0}")]
    UniqueNameTaken(String),
    /// The session already has its two participants.
    #[error("{0}")]
    TooManyParticipants(String),
    /// The participant's number is already one of the session's participants.
    #[error("{0}")]
    ParticipantAlreadyInSession(String),
    /// A status change the session's lifecycle does not allow (e.g. reopening an open one).
    #[error("{0}")]
    InvalidStatusTransition(String),
    /// Too many concurrent changes to finish now; nothing was written.
    #[error("{0}")]
    Contention(String),
    /// Twilio did not place a call; `callee` is the masked number.
    #[error("calling {callee}: {cause}")]
    CallNotPlaced { callee: String, cause: CallError },
    #[error(transparent)]
    Store(#[from] StoreError),
}
