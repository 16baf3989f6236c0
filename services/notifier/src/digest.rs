//! The weekly digest: every Monday at 09:00 in the mentor's time zone, each mentor gets each
//! of their groups' numbers for the week that just ended, read from KpiService when it is sent.

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetScorecardRequest, Metric, Subject, SubjectKind, Window, WindowKind, metric_value,
};
use mentorstream_tenancy::{ReadKeys, Tenants};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Local time of the digest on Mondays.
const DIGEST_AT: NaiveTime = NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 is a time");

/// This week's digest time and the week it reports on (the one before), or None before it.
pub fn due_digest(now: DateTime<Utc>, time_zone: Tz) -> Option<(DateTime<Utc>, NaiveDate)> {
    let today = now.with_timezone(&time_zone).date_naive();
    let monday = today - TimeDelta::days(i64::from(today.weekday().num_days_from_monday()));
    let due = time_zone
        .from_local_datetime(&monday.and_time(DIGEST_AT))
        .earliest()?
        .with_timezone(&Utc);
    (now >= due).then(|| (due, monday - TimeDelta::days(7)))
}

/// `2026-W47` for any day of that ISO week.
pub fn week_label(day: NaiveDate) -> String {
    let week = day.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

#[derive(Debug, thiserror::Error)]
pub enum KpiError {
    #[error("cannot issue a key for KpiService: {0}")]
    Key(#[from] mentorstream_tenancy::TenancyError),
    #[error("KpiService did not answer: {0}")]
    Call(#[from] tonic::Status),
}

/// Reads group scorecards from KpiService with a short-lived read key per tenant.
#[derive(Debug)]
pub struct KpiReader {
    client: KpiServiceClient<Channel>,
    keys: ReadKeys,
}

impl KpiReader {
    pub fn new(channel: Channel, tenants: Tenants) -> Self {
        Self {
            client: KpiServiceClient::new(channel),
            keys: ReadKeys::new(tenants),
        }
    }

    async fn key(&self, tenant_id: &str) -> Result<String, KpiError> {
        Ok(self.keys.key(tenant_id).await?)
    }

    /// The template values of a group for the ISO week starting `week_start`.
    pub async fn group_week(
        &self,
        tenant_id: &str,
        group_id: &str,
        week_start: NaiveDate,
    ) -> Result<Value, KpiError> {
        let key = self.key(tenant_id).await?;
        let mut request = tonic::Request::new(GetScorecardRequest {
            subject: Some(Subject {
                kind: SubjectKind::Group as i32,
                id: group_id.to_owned(),
                mentor_id: String::new(),
            }),
            window: Some(Window {
                kind: WindowKind::Week as i32,
                anchor: Some(week_start.into()),
            }),
        });
        let bearer = format!("Bearer {key}")
            .parse()
            .map_err(|_| tonic::Status::internal("an issued key is not ASCII"))?;
        request.metadata_mut().insert("authorization", bearer);
        let scorecard = self
            .client
            .clone()
            .get_scorecard(request)
            .await?
            .into_inner();
        let mut values = json!({
            "week": week_label(week_start),
            "week_start": week_start.to_string(),
        });
        // A metric without a value (a ratio of nobody, e.g. retention without eligible
        // mentees) reads as a dash.
        for name in DIGEST_METRICS
            .iter()
            .filter_map(|metric| metric_name(*metric))
        {
            values[name] = json!("—");
        }
        for value in scorecard.values {
            let Some(name) = metric_name(value.metric()) else {
                continue;
            };
            values[name] = match value.value {
                Some(metric_value::Value::Count(count)) => json!(count),
                Some(metric_value::Value::Decimal(decimal)) => json!(decimal.value),
                Some(metric_value::Value::Fraction(ref fraction)) => {
                    match (fraction.hundredths(), value.metric()) {
                        (Some(percent), Metric::Retention30d) => json!(format!("{percent}%")),
                        (Some(hundredths), _) => {
                            json!(format!("{}.{:02}", hundredths / 100, hundredths % 100))
                        }
                        (None, _) => json!("—"),
                    }
                }
                _ => json!("—"),
            };
        }
        Ok(values)
    }
}

const DIGEST_METRICS: [Metric; 10] = [
    Metric::GroupSize,
    Metric::SessionsCompleted,
    Metric::SessionsMissed,
    Metric::Recruits,
    Metric::SalesVolume,
    Metric::Orders,
    Metric::ModulesCompleted,
    Metric::FeedbackAvg,
    Metric::FeedbackCount,
    Metric::Retention30d,
];

/// The digest's names of the metrics it shows.
fn metric_name(metric: Metric) -> Option<&'static str> {
    Some(match metric {
        Metric::GroupSize => "group_size",
        Metric::SessionsCompleted => "sessions_completed",
        Metric::SessionsMissed => "sessions_missed",
        Metric::Recruits => "recruits",
        Metric::SalesVolume => "sales_volume",
        Metric::Orders => "orders",
        Metric::ModulesCompleted => "modules_completed",
        Metric::FeedbackAvg => "feedback_avg",
        Metric::FeedbackCount => "feedback_count",
        Metric::Retention30d => "retention_30d",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_digest_is_due_from_monday_nine_local() {
        let moscow = chrono_tz::Europe::Moscow;
        let monday = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
        // Monday 2026-11-30 09:00 Moscow = 06:00 UTC; it reports the week from 2026-11-23.
        assert_eq!(due_digest(at("2026-11-30T05:59:59Z"), moscow), None);
        assert_eq!(
            due_digest(at("2026-11-30T06:00:00Z"), moscow),
            Some((at("2026-11-30T06:00:00Z"), monday - TimeDelta::days(7)))
        );
        assert_eq!(
            due_digest(at("2026-12-06T20:59:59Z"), moscow),
            Some((at("2026-11-30T06:00:00Z"), monday - TimeDelta::days(7)))
        );
        assert_eq!(week_label(monday - TimeDelta::days(7)), "2026-W48");
        assert_eq!(week_label(monday), "2026-W49");
        assert_eq!(
            week_label(NaiveDate::from_ymd_opt(2027, 1, 1).expect("date")),
            "2026-W53"
        );
    }
}
