//! The dashboard's numbers, read from the KPI service with a short-lived read key of the
//! tenant (`mentorstream_tenancy::ReadKeys`), and turned into the page's JSON
//! (docs/dashboards.md). A subject the aggregator has not seen yet (a new group, a partner
//! whose enrolment is on its way) reads as empty, not as an error.

use std::collections::BTreeMap;

use std::sync::Arc;

use chrono::{Datelike as _, NaiveDate};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use mentorstream_proto::common::v1::LocalDate;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetGoalProgressRequest, GetJourneyRequest, GetJourneyResponse, GetLeaderboardRequest,
    GetScorecardRequest, GetSeriesRequest, Granularity, KpiUpdate, LeaderboardEntry, Metric,
    MetricValue, Subject, SubjectKind, WatchKpisRequest, WatchKpisResponse, Window, WindowKind,
    metric_value,
};
use mentorstream_tenancy::ReadKeys;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Most subjects one WatchKpis call takes (the KPI service's limit).
const MAX_WATCHED: usize = 100;

/// The windows a page shows and follows live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Span {
    Week,
    Month,
    Lifetime,
}

impl Span {
    fn kind(self) -> WindowKind {
        match self {
            Self::Week => WindowKind::Week,
            Self::Month => WindowKind::Month,
            Self::Lifetime => WindowKind::Lifetime,
        }
    }

    fn of(kind: WindowKind) -> Option<Self> {
        match kind {
            WindowKind::Week => Some(Self::Week),
            WindowKind::Month => Some(Self::Month),
            WindowKind::Lifetime => Some(Self::Lifetime),
            _ => None,
        }
    }

    /// The first local day of the window holding `date` (the aggregator's ISO weeks).
    pub fn first_day(self, date: NaiveDate) -> Option<NaiveDate> {
        match self {
            Self::Week => date.checked_sub_days(chrono::Days::new(u64::from(
                date.weekday().num_days_from_monday(),
            ))),
            Self::Month => date.with_day(1),
            Self::Lifetime => None,
        }
    }
}

/// A subject as the page names it: `{"kind": "GROUP", "id": "g-1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectRef {
    pub kind: &'static str,
    pub id: String,
}

impl SubjectRef {
    pub const PARTNER: &'static str = "PARTNER";

    pub fn partner(id: &str) -> Self {
        Self::new(Self::PARTNER, id)
    }
    pub fn group(id: &str) -> Self {
        Self::new("GROUP", id)
    }
    pub fn team(id: &str) -> Self {
        Self::new("TEAM", id)
    }

    fn new(kind: &'static str, id: &str) -> Self {
        Self {
            kind,
            id: id.to_owned(),
        }
    }

    fn proto(&self) -> Subject {
        let kind = match self.kind {
            "GROUP" => SubjectKind::Group,
            "TEAM" => SubjectKind::Team,
            _ => SubjectKind::Partner,
        };
        Subject {
            kind: kind.into(),
            id: self.id.clone(),
            mentor_id: String::new(),
        }
    }

    fn of(subject: &Subject) -> Option<Self> {
        let kind = match SubjectKind::try_from(subject.kind).ok()? {
            SubjectKind::Partner => Self::PARTNER,
            SubjectKind::Group => "GROUP",
            SubjectKind::Team => "TEAM",
            _ => return None,
        };
        Some(Self::new(kind, &subject.id))
    }
}

/// One number, exact: `value` is the decimal as the aggregator wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Value {
    pub metric: &'static str,
    pub value: String,
    /// For charts only.
    pub number: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numerator: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<i64>,
}

impl Value {
    pub fn of_metric(value: &MetricValue) -> Option<Self> {
        let metric = metric_name(value.metric)?;
        let (text, numerator, denominator) = match value.value.as_ref()? {
            metric_value::Value::Count(count) => (count.to_string(), None, None),
            metric_value::Value::Decimal(decimal) => (decimal.value.clone(), None, None),
            metric_value::Value::Fraction(fraction) => (
                fraction
                    .value
                    .as_ref()
                    .map(|value| value.value.clone())
                    .unwrap_or_default(),
                Some(fraction.numerator),
                Some(fraction.denominator),
            ),
            #[allow(deprecated)]
            metric_value::Value::Ratio(ratio) => (ratio.to_string(), None, None),
        };
        Some(Self {
            metric,
            number: text.parse().unwrap_or(0.0),
            value: text,
            numerator,
            denominator,
        })
    }
}

/// `METRIC_SALES_VOLUME` → `SALES_VOLUME`.
pub fn metric_name(metric: i32) -> Option<&'static str> {
    Metric::try_from(metric)
        .ok()
        .filter(|metric| *metric != Metric::Unspecified)
        .and_then(|metric| metric.as_str_name().strip_prefix("METRIC_"))
}

/// An answer of the KPI service with the time up to which it counts every accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Dated<T> {
    pub value: T,
    pub as_of: Option<String>,
}

/// One subject's numbers in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub subject: SubjectRef,
    pub window: Span,
    pub from: Option<NaiveDate>,
    pub values: BTreeMap<&'static str, Value>,
    pub as_of: Option<String>,
}

impl Card {
    /// The card of a live update, if it is about one of the page's windows.
    pub fn of_update(update: &KpiUpdate) -> Option<Self> {
        let window = update.window.as_ref()?;
        let span = Span::of(WindowKind::try_from(window.kind).ok()?)?;
        Some(Self {
            subject: SubjectRef::of(update.subject.as_ref()?)?,
            window: span,
            // WatchKpis echoes the anchor it was asked for, any day of the window.
            from: window
                .anchor
                .as_ref()
                .and_then(LocalDate::to_naive)
                .and_then(|anchor| span.first_day(anchor)),
            values: values(&update.values),
            as_of: update.as_of.as_ref().map(rfc3339),
        })
    }
}

fn values(values: &[MetricValue]) -> BTreeMap<&'static str, Value> {
    values
        .iter()
        .filter_map(Value::of_metric)
        .map(|value| (value.metric, value))
        .collect()
}

/// A point of a daily series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub date: NaiveDate,
    pub value: Value,
}

pub fn rfc3339(timestamp: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(
        timestamp.seconds,
        u32::try_from(timestamp.nanos).unwrap_or(0),
    )
    .unwrap_or_default()
    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The KPI service, asked with the tenant's lent read key.
#[derive(Debug, Clone)]
pub struct KpiReader {
    pub client: KpiServiceClient<Channel>,
    pub keys: Arc<ReadKeys>,
}

/// What an answer about an unknown subject becomes: `empty`; other refusals stay errors.
fn or_empty<T>(answer: Result<T, Status>, empty: impl FnOnce() -> T) -> Result<T, Status> {
    match answer {
        Err(status) if status.code() == Code::NotFound => Ok(empty()),
        answer => answer,
    }
}

impl KpiReader {
    async fn granted<T>(&self, tenant_id: &str, message: T) -> Result<Request<T>, Status> {
        let key = self.keys.key(tenant_id).await.map_err(|error| {
            tracing::warn!(%error, "cannot lend a read key for the KPI service");
            Status::unavailable("cannot issue a read key for the KPI service")
        })?;
        let mut request = Request::new(message);
        let bearer = format!("Bearer {key}")
            .parse()
            .map_err(|_| Status::internal("an API key that is not a header value"))?;
        request.metadata_mut().insert("authorization", bearer);
        Ok(request)
    }

    pub async fn card(
        &self,
        tenant_id: &str,
        subject: &SubjectRef,
        span: Span,
        date: NaiveDate,
    ) -> Result<Card, Status> {
        let request = GetScorecardRequest {
            subject: Some(subject.proto()),
            window: Some(Window {
                kind: span.kind().into(),
                anchor: Some(date.into()),
            }),
        };
        let request = self.granted(tenant_id, request).await?;
        let answer = self
            .client
            .clone()
            .get_scorecard(request)
            .await
            .map(tonic::Response::into_inner);
        let answer = or_empty(answer, Default::default)?;
        Ok(Card {
            subject: subject.clone(),
            window: span,
            from: span.first_day(date),
            values: values(&answer.values),
            as_of: answer.as_of.as_ref().map(rfc3339),
        })
    }

    /// Daily values of `metric` from `from` to `to`, every day present, with the answer's
    /// `as_of`.
    pub async fn daily(
        &self,
        tenant_id: &str,
        subject: &SubjectRef,
        metric: Metric,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Dated<Vec<Point>>, Status> {
        let request = GetSeriesRequest {
            subject: Some(subject.proto()),
            metric: metric.into(),
            granularity: Granularity::Day.into(),
            from: Some(from.into()),
            to: Some(to.into()),
        };
        let request = self.granted(tenant_id, request).await?;
        let answer = self
            .client
            .clone()
            .get_series(request)
            .await
            .map(tonic::Response::into_inner);
        let answer = or_empty(answer, Default::default)?;
        Ok(Dated {
            value: answer
                .points
                .iter()
                .filter_map(|point| {
                    Some(Point {
                        date: point.bucket_start.as_ref()?.to_naive()?,
                        value: Value::of_metric(point.value.as_ref()?)?,
                    })
                })
                .collect(),
            as_of: answer.as_of.as_ref().map(rfc3339),
        })
    }

    /// The first `size` partners of `team_root`'s team by `metric` in the month of `date`.
    pub async fn leaderboard(
        &self,
        tenant_id: &str,
        team_root: &str,
        metric: Metric,
        date: NaiveDate,
        size: u32,
    ) -> Result<Dated<Vec<LeaderboardEntry>>, Status> {
        let request = GetLeaderboardRequest {
            entry_kind: SubjectKind::Partner.into(),
            metric: metric.into(),
            window: Some(Window {
                kind: WindowKind::Month.into(),
                anchor: Some(date.into()),
            }),
            team_root_id: team_root.to_owned(),
            page_size: size,
            page_token: String::new(),
        };
        let request = self.granted(tenant_id, request).await?;
        let answer = self
            .client
            .clone()
            .get_leaderboard(request)
            .await
            .map(tonic::Response::into_inner);
        let answer = or_empty(answer, Default::default)?;
        Ok(Dated {
            as_of: answer.as_of.as_ref().map(rfc3339),
            value: answer.entries,
        })
    }

    /// The partner's journey; None before the aggregator has seen them.
    pub async fn journey(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Option<GetJourneyResponse>, Status> {
        let request = GetJourneyRequest {
            partner_id: partner_id.to_owned(),
        };
        let request = self.granted(tenant_id, request).await?;
        let answer = self
            .client
            .clone()
            .get_journey(request)
            .await
            .map(|answer| Some(answer.into_inner()));
        or_empty(answer, || None)
    }

    /// The goals' values by goal id, as the aggregator decides them.
    pub async fn goal_progress(
        &self,
        tenant_id: &str,
        request: GetGoalProgressRequest,
    ) -> Result<std::collections::HashMap<String, String>, Status> {
        let request = self.granted(tenant_id, request).await?;
        let answer = self
            .client
            .clone()
            .get_goal_progress(request)
            .await?
            .into_inner();
        Ok(answer
            .goals
            .into_iter()
            .filter_map(|goal| Some((goal.goal_id, goal.value?.value)))
            .collect())
    }

    /// Updates of `subjects` in the week, month and lifetime of `date`, the KPI service's
    /// limit of subjects per call respected; subjects it does not know yet are left out. With
    /// none left, a stream that never yields.
    pub async fn watch(
        &self,
        tenant_id: &str,
        subjects: &[SubjectRef],
        date: NaiveDate,
    ) -> Result<BoxStream<'static, Result<WatchKpisResponse, Status>>, Status> {
        let mut streams = Vec::new();
        for chunk in subjects.chunks(MAX_WATCHED) {
            match self.watch_some(tenant_id, chunk, date).await {
                Ok(stream) => streams.push(stream),
                // Which one is unknown is not said: watch them one by one.
                Err(status) if status.code() == Code::NotFound => {
                    for subject in chunk {
                        let one = self.watch_some(tenant_id, std::slice::from_ref(subject), date);
                        if let Some(stream) = or_empty(one.await.map(Some), || None)? {
                            streams.push(stream);
                        }
                    }
                }
                Err(status) => return Err(status),
            }
        }
        if streams.is_empty() {
            // Nothing to follow (yet): the stream stays open until it is checked again,
            // instead of ending at once and making the browser reconnect in a loop.
            return Ok(futures::stream::pending().boxed());
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn watch_some(
        &self,
        tenant_id: &str,
        subjects: &[SubjectRef],
        date: NaiveDate,
    ) -> Result<BoxStream<'static, Result<WatchKpisResponse, Status>>, Status> {
        let request = WatchKpisRequest {
            subjects: subjects.iter().map(SubjectRef::proto).collect(),
            windows: [Span::Week, Span::Month, Span::Lifetime]
                .into_iter()
                .map(|span| Window {
                    kind: span.kind().into(),
                    anchor: Some(date.into()),
                })
                .collect(),
        };
        let request = self.granted(tenant_id, request).await?;
        Ok(self
            .client
            .clone()
            .watch_kpis(request)
            .await?
            .into_inner()
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use mentorstream_proto::common::v1::Decimal;
    use mentorstream_proto::kpi::v1::Fraction;

    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    #[test]
    fn a_window_starts_on_monday_or_the_first() {
        assert_eq!(
            Span::Week.first_day(date("2026-12-02")),
            Some(date("2026-11-30"))
        );
        assert_eq!(
            Span::Week.first_day(date("2026-11-30")),
            Some(date("2026-11-30"))
        );
        assert_eq!(
            Span::Month.first_day(date("2026-12-02")),
            Some(date("2026-12-01"))
        );
        assert_eq!(Span::Lifetime.first_day(date("2026-12-02")), None);
    }

    #[test]
    fn values_keep_the_exact_text() {
        let decimal = MetricValue {
            metric: Metric::SalesVolume.into(),
            value: Some(metric_value::Value::Decimal(Decimal {
                value: "1234.50".into(),
            })),
        };
        let value = Value::of_metric(&decimal).expect("value");
        assert_eq!(
            (value.metric, value.value.as_str()),
            ("SALES_VOLUME", "1234.50")
        );
        let fraction = MetricValue {
            metric: Metric::Retention30d.into(),
            value: Some(metric_value::Value::Fraction(Fraction {
                numerator: 2,
                denominator: 3,
                value: Some(Decimal {
                    value: "0.6667".into(),
                }),
            })),
        };
        let value = Value::of_metric(&fraction).expect("value");
        assert_eq!(
            (
                value.metric,
                value.value.as_str(),
                value.numerator,
                value.denominator
            ),
            ("RETENTION_30D", "0.6667", Some(2), Some(3))
        );
        assert_eq!(metric_name(0), None);
    }
}
