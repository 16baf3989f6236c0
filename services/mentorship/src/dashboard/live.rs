//! `GET /dashboard/api/live/{page}/{subject}?token=`: the page's numbers as they change, as
//! server-sent events, from the KPI service's WatchKpis. Each `card` event is one subject's
//! numbers in the page's current week, month or lifetime; a `goals` event a partner's goals
//! with their progress, after a change of that partner's numbers. When the link expires the stream
//! says `gone` and ends; after [`RECHECK_AFTER`], on shutdown or when the KPI stream ends it
//! just ends, and the browser reconnects — checked again, so a mentee moved to another group
//! or a partner moved out of a team stops streaming within minutes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse as _, Response};
use chrono::{NaiveDate, Utc};
use futures::{Stream, StreamExt as _};
use http::HeaderMap;

use std::sync::Arc;

use mentorstream_proto::kpi::v1::WatchKpisResponse;
use serde::Serialize;
use tonic::Status;

use super::access::{Page, Refusal, unavailable};
use super::kpi::{Card, KpiReader, Span, SubjectRef};
use super::{Admitted, Dashboard, PageQuery, refusal_json, views};

/// How long one stream lives before the browser must reconnect and be checked again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(600);
/// Live streams one link partner may have open at once on one replica: a person's tabs and
/// devices, not a leaked link's thousands (each stream holds a KPI watch).
pub const MAX_STREAMS_PER_PARTNER: usize = 8;

/// The live streams open on this replica, by (tenant, link partner).
#[derive(Debug, Default)]
pub struct Streams {
    open: std::sync::Mutex<std::collections::HashMap<(String, String), usize>>,
}

impl Streams {
    /// A place for one more stream of `partner_id`, held until the slot is dropped.
    fn take(self: &Arc<Self>, tenant_id: &str, partner_id: &str) -> Result<Slot, Refusal> {
        let key = (tenant_id.to_owned(), partner_id.to_owned());
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key.clone()).or_default();
        if *count >= MAX_STREAMS_PER_PARTNER {
            return Err(Refusal::TooManyStreams(*count));
        }
        *count += 1;
        Ok(Slot {
            streams: Arc::clone(self),
            key,
        })
    }
}

/// One open stream's place in [`Streams`].
struct Slot {
    streams: Arc<Streams>,
    key: (String, String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

pub async fn stream(
    State(dashboard): State<Dashboard>,
    Path((page, subject)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let opened = async {
        let admitted = dashboard.admit(&page, &subject, &headers, &query).await?;
        let slot = dashboard
            .streams
            .take(&admitted.claims.tenant_id, &admitted.claims.partner_id)?;
        let reader = dashboard.reader();
        let ask = dashboard.ask(&reader, &admitted);
        let subjects = views::live_subjects(ask, admitted.page, &subject).await?;
        let updates = reader
            .watch(ask.tenant(), &subjects, admitted.date)
            .await
            .map_err(unavailable)?;
        let expires_at = admitted.claims.expires_at;
        let partners: Vec<String> = subjects
            .iter()
            .filter(|subject| subject.kind == SubjectRef::PARTNER)
            .map(|subject| subject.id.clone())
            .collect();
        let with_goals = match admitted.page {
            Page::Partner | Page::Mentor => views::with_goals(ask, &partners).await?,
            Page::Team => Vec::new(),
        };
        let watch = Arc::new(Watch {
            dashboard: dashboard.clone(),
            reader,
            admitted,
            subjects,
            with_goals,
            _slot: slot,
        });
        Ok::<_, Refusal>((updates, watch, expires_at))
    };
    match opened.await {
        Ok((updates, watch, expires_at)) => {
            let events = updates
                .then(move |update| {
                    let watch = Arc::clone(&watch);
                    async move { watch.events(update).await }
                })
                .flat_map(futures::stream::iter);
            let events = until_expiry(events, expires_at, dashboard.shutdown.clone());
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Err(refusal) => refusal_json(&refusal),
    }
}

/// One open stream: whom it is for and what it follows.
struct Watch {
    dashboard: Dashboard,
    reader: KpiReader,
    admitted: Admitted,
    subjects: Vec<SubjectRef>,
    /// The followed partners whose goals the page shows (it drew them when it loaded).
    with_goals: Vec<String>,
    /// Freed when the stream ends.
    _slot: Slot,
}

impl Watch {
    /// The events one KPI update makes: a `card` when it is about one of the followed
    /// subjects in one of the page's windows, then, on a partner page or a mentor page, a
    /// partner's changed numbers also move their goals: `goals` with every goal's progress.
    async fn events(&self, update: Result<WatchKpisResponse, Status>) -> Vec<Event> {
        let card = match update {
            Ok(answer) => answer.update.as_ref().and_then(Card::of_update),
            Err(status) => {
                tracing::debug!(%status, "KPI watch ended");
                None
            }
        };
        let Some(card) = card
            .filter(|card| current(card, self.admitted.date))
            .filter(|card| self.subjects.contains(&card.subject))
        else {
            return Vec::new();
        };
        let mut events: Vec<Event> = Event::default()
            .event("card")
            .json_data(&card)
            .ok()
            .into_iter()
            .collect();
        if self.moves_goals(&card) {
            events.extend(self.goals(&card.subject.id).await);
        }
        events
    }

    /// Every change of a partner's numbers changes their lifetime card once: goals are read
    /// again on that one, for partners whose goals the page shows.
    fn moves_goals(&self, card: &Card) -> bool {
        card.window == Span::Lifetime
            && card.subject.kind == SubjectRef::PARTNER
            && self.with_goals.contains(&card.subject.id)
    }

    async fn goals(&self, partner_id: &str) -> Option<Event> {
        let ask = self.dashboard.ask(&self.reader, &self.admitted);
        match views::live_goals(ask, partner_id).await {
            Ok(goals) if goals.is_empty() => None,
            Ok(goals) => Event::default()
                .event("goals")
                .json_data(GoalsEvent { partner_id, goals })
                .ok(),
            Err(refusal) => {
                tracing::debug!(code = refusal.code(), "goals not read again");
                None
            }
        }
    }
}

/// The data of a `goals` event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoalsEvent<'a> {
    partner_id: &'a str,
    goals: Vec<views::GoalView>,
}

/// Whether a card is about the page's week, month or lifetime.
fn current(card: &Card, date: NaiveDate) -> bool {
    card.window == Span::Lifetime || card.from == card.window.first_day(date)
}

/// `cards` until the link expires (then one `gone` event) or the service shuts down.
fn until_expiry(
    cards: impl Stream<Item = Event> + Send + 'static,
    expires_at: i64,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let remaining =
        Duration::from_secs(u64::try_from(expires_at - Utc::now().timestamp()).unwrap_or(0))
            .min(RECHECK_AFTER);
    let end = async move {
        tokio::select! {
            () = tokio::time::sleep(remaining) => {}
            () = shutdown.cancelled_owned() => {}
        }
    };
    let gone = futures::stream::once(async move {
        (Utc::now().timestamp() >= expires_at).then(|| {
            let refusal = Refusal::Expired(
                chrono::DateTime::from_timestamp(expires_at, 0).unwrap_or_default(),
            );
            Event::default()
                .event("gone")
                .data(refusal.json().to_string())
        })
    })
    .filter_map(std::future::ready);
    cards.take_until(end).chain(gone).map(Ok)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn card(window: Span, from: Option<&str>) -> Card {
        Card {
            subject: SubjectRef::partner("p-1"),
            window,
            from: from.map(|from| from.parse().expect("date")),
            values: BTreeMap::new(),
            as_of: None,
        }
    }

    #[test]
    fn a_partner_has_at_most_so_many_streams_open_at_once() {
        let streams = Arc::new(Streams::default());
        let mut anna: Vec<Slot> = (0..MAX_STREAMS_PER_PARTNER)
            .map(|_| streams.take("t1", "anna").expect("a place"))
            .collect();
        assert_eq!(
            streams.take("t1", "anna").err(),
            Some(Refusal::TooManyStreams(MAX_STREAMS_PER_PARTNER))
        );
        // Another partner, or the same id in another tenant, is counted apart.
        let boris = streams.take("t1", "boris").expect("a place");
        let other = streams.take("t2", "anna").expect("a place");
        anna.pop();
        anna.push(streams.take("t1", "anna").expect("a place freed"));
        drop((anna, boris, other));
        let open = streams.open.lock().expect("not poisoned");
        assert!(open.is_empty(), "{open:?}");
    }

    #[test]
    fn only_the_pages_own_windows_go_out() {
        let date = "2026-12-02".parse().expect("date");
        assert!(current(&card(Span::Week, Some("2026-11-30")), date));
        assert!(!current(&card(Span::Week, Some("2026-11-23")), date));
        assert!(current(&card(Span::Month, Some("2026-12-01")), date));
        assert!(!current(&card(Span::Month, Some("2026-11-01")), date));
        assert!(current(&card(Span::Lifetime, None), date));
    }
}
