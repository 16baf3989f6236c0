//! Whose numbers: the subjects of KPIs, and a number a batch changed — what the write path
//! tells the updates publisher and the query path answers for.

use std::sync::Arc;

use crate::calendar::Bucket;

/// Whose counters to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Partner(&'a str),
    /// A partner and their whole downline.
    Team(&'a str),
    /// A mentor's group: its mentees' contributions while assigned.
    Group(&'a str),
    Tenant,
}

/// A subject, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnedSubject {
    Partner(String),
    Team(String),
    Group(String),
    Tenant,
}

impl OwnedSubject {
    pub fn as_subject(&self) -> Subject<'_> {
        match self {
            Self::Partner(id) => Subject::Partner(id),
            Self::Team(id) => Subject::Team(id),
            Self::Group(id) => Subject::Group(id),
            Self::Tenant => Subject::Tenant,
        }
    }
}

/// A number that an applied batch changed: a subject's counters in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Changed {
    pub tenant_id: Arc<str>,
    pub subject: OwnedSubject,
    pub bucket: Bucket,
}
