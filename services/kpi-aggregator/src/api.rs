//! KpiService over gRPC: scorecards (with targets), series, leaderboards of partners or groups
//! (tenant-wide or within a team), journeys, WatchKpis, Explain and target management.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use mentorstream_grpc::{authorize, caller_tenant, field_violation};
use mentorstream_proto::common::v1::LocalDate;
use mentorstream_proto::kpi::v1::kpi_service_server::KpiService;
use mentorstream_proto::kpi::v1::{
    Contribution, DeleteTargetRequest, DeleteTargetResponse, ExplainRequest, ExplainResponse,
    GetGoalProgressRequest, GetGoalProgressResponse, GetJourneyRequest, GetJourneyResponse,
    GetLeaderboardRequest, GetLeaderboardResponse, GetScorecardRequest, GetScorecardResponse,
    GetSeriesRequest, GetSeriesResponse, GoalProgress, KpiUpdate, LeaderboardEntry,
    ListTargetsRequest, ListTargetsResponse, MentorPeriod, Metric, MetricValue, PutTargetRequest,
    PutTargetResponse, RankMilestone, SeriesPoint, SubjectKind, TargetProgress, WatchKpisRequest,
    WatchKpisResponse, WindowKind, metric_value,
};
use mentorstream_tenancy::{Principal, Scope, Tenant, Tenants};
use tonic::{Request, Response, Status};

use crate::calendar::{Calendar, Granularity, Window};
use crate::fold::rank_time;
use crate::metric::{Counter, NOT_COUNTED, decimal, fraction, metric_values, timestamp};
use crate::namespace::Namespace;
use crate::store::{OwnedSubject, StoreError, Subject};
use crate::target::Target;
use crate::updates::Hub;

/// Longest partner id, as at ingest.
const MAX_ID_CHARS: usize = 128;
/// Points of one series at most (a little over a year of days).
const MAX_SERIES_POINTS: usize = 400;
/// Leaderboard page sizes: the default and the largest.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;

/// Partners of a team, or groups, one ranking sums at query time at most.
const MAX_RANKED: usize = 10_000;

/// Subjects, and windows, one WatchKpis call may watch at most.
const MAX_WATCHED: usize = 100;
/// Updates a watcher's stream holds before the server waits for the client.
const WATCH_BUFFER: usize = 64;

type WatchStream = tonic::codegen::BoxStream<WatchKpisResponse>;

#[derive(Debug, Clone)]
pub struct Api {
    /// The active generation's state; `None` until it is known.
    pub namespace: tokio::sync::watch::Receiver<Option<Namespace>>,
    pub tenants: Tenants,
    pub hub: Hub,
}

#[tonic::async_trait]
impl KpiService for Api {
    async fn put_target(
        &self,
        request: Request<PutTargetRequest>,
    ) -> Result<Response<PutTargetResponse>, Status> {
        let principal = authorize(&request, Scope::Admin)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let target = request
            .target
            .as_ref()
            .ok_or_else(|| field_violation("target", "is required"))?;
        if request.request_id.chars().count() > MAX_ID_CHARS {
            return Err(field_violation(
                "request_id",
                format!("must be at most {MAX_ID_CHARS} characters"),
            ));
        }
        let target = Target::from_proto(target, &uuid::Uuid::new_v4().to_string())
            .map_err(|invalid| field_violation(invalid.field, invalid.message))?;
        let request_id = (!request.request_id.is_empty()).then_some(request.request_id.as_str());
        let stored = self
            .tenants
            .put_target(&tenant.tenant_id, request_id, &target.to_stored())
            .await
            .map_err(unavailable)?;
        let target = Target::from_stored(&stored)
            .ok_or_else(|| unavailable(format!("unreadable stored target {stored:?}")))?;
        Ok(Response::new(PutTargetResponse {
            target: Some(target.to_proto()),
        }))
    }

    async fn list_targets(
        &self,
        request: Request<ListTargetsRequest>,
    ) -> Result<Response<ListTargetsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let limit = i64::try_from(page_size + 1).unwrap_or(i64::MAX);
        let mut stored = self
            .tenants
            .list_targets(&tenant.tenant_id, &request.page_token, limit)
            .await
            .map_err(unavailable)?;
        let more = stored.len() > page_size;
        stored.truncate(page_size);
        Ok(Response::new(ListTargetsResponse {
            next_page_token: if more {
                stored
                    .last()
                    .map(|last| last.target_id.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            },
            targets: stored
                .iter()
                .filter_map(Target::from_stored)
                .map(|target| target.to_proto())
                .collect(),
        }))
    }

    async fn delete_target(
        &self,
        request: Request<DeleteTargetRequest>,
    ) -> Result<Response<DeleteTargetResponse>, Status> {
        let principal = authorize(&request, Scope::Admin)?;
        let tenant = self.tenant(&principal).await?;
        let target_id = request.into_inner().target_id;
        check_id("target_id", &target_id)?;
        if self
            .tenants
            .delete_target(&tenant.tenant_id, &target_id)
            .await
            .map_err(unavailable)?
        {
            Ok(Response::new(DeleteTargetResponse {}))
        } else {
            Err(Status::not_found(format!("no target `{target_id}`")))
        }
    }

    async fn get_journey(
        &self,
        request: Request<GetJourneyRequest>,
    ) -> Result<Response<GetJourneyResponse>, Status> {
        self.journey(request).await.map(Response::new)
    }

    async fn get_leaderboard(
        &self,
        request: Request<GetLeaderboardRequest>,
    ) -> Result<Response<GetLeaderboardResponse>, Status> {
        self.leaderboard(request).await.map(Response::new)
    }

    async fn get_series(
        &self,
        request: Request<GetSeriesRequest>,
    ) -> Result<Response<GetSeriesResponse>, Status> {
        self.series(request).await.map(Response::new)
    }

    async fn get_scorecard(
        &self,
        request: Request<GetScorecardRequest>,
    ) -> Result<Response<GetScorecardResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let namespace = self.current_namespace()?;
        let request = request.into_inner();
        let subject = request
            .subject
            .ok_or_else(|| field_violation("subject", "is required"))?;
        let window = request
            .window
            .ok_or_else(|| field_violation("window", "is required"))?;
        self.scorecard(&namespace, &tenant, subject, window)
            .await
            .map(Response::new)
    }

    async fn get_goal_progress(
        &self,
        request: Request<GetGoalProgressRequest>,
    ) -> Result<Response<GetGoalProgressResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let namespace = self.current_namespace()?;
        let request = request.into_inner();
        let mentee_id = check_id("mentee_id", &request.mentee_id)?;
        if request.goal_ids.len() > MAX_WATCHED {
            return Err(field_violation(
                "goal_ids",
                format!("at most {MAX_WATCHED} goals at a time"),
            ));
        }
        ensure_known(&namespace, &tenant.tenant_id, Subject::Partner(mentee_id)).await?;
        let as_of = namespace.progress.as_of().await.map_err(unavailable)?;
        let goals = namespace
            .store
            .goal_progress(&tenant.tenant_id, mentee_id, &request.goal_ids)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|(goal_id, counter, value)| GoalProgress {
                goal_id,
                value: Some(if counter == Counter::SalesVolume {
                    decimal(value)
                } else {
                    mentorstream_proto::common::v1::Decimal {
                        value: value.to_string(),
                    }
                }),
            })
            .collect();
        Ok(Response::new(GetGoalProgressResponse {
            goals,
            as_of: as_of.map(timestamp),
        }))
    }

    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        self.explain_number(request).await.map(Response::new)
    }

    async fn watch_kpis(
        &self,
        request: Request<WatchKpisRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.watch(request).await.map(Response::new)
    }
}

impl Api {
    /// The scorecard of `proto_subject` in `proto_window`: every metric, group extras, and
    /// progress toward the tenant's targets of this subject kind and window kind.
    pub(crate) async fn scorecard(
        &self,
        namespace: &Namespace,
        tenant: &Tenant,
        proto_subject: mentorstream_proto::kpi::v1::Subject,
        proto_window: mentorstream_proto::kpi::v1::Window,
    ) -> Result<GetScorecardResponse, Status> {
        let (owned, proto_subject) = resolve(namespace, &tenant.tenant_id, &proto_subject).await?;
        let subject = owned.as_subject();
        let calendar = Calendar::new(tenant.time_zone);
        let window = window(&proto_window, &calendar)?;
        let as_of = namespace.progress.as_of().await.map_err(unavailable)?;
        let mut counters = namespace
            .store
            .counters(&tenant.tenant_id, subject, &window.buckets())
            .await
            .map_err(unavailable)?;
        let mut group_values = Vec::new();
        if let Subject::Group(group_id) = subject {
            let (feedback, values) =
                Self::group(namespace, &tenant.tenant_id, group_id, window, &calendar).await?;
            counters.extend(feedback);
            group_values = values;
        }
        group_values.extend(shape(namespace, &tenant.tenant_id, subject).await?);
        let count = |counter: Counter| counters.get(&counter).copied().unwrap_or(0);
        let mut values = metric_values(&counters);
        values.extend(group_values);
        values.sort_by_key(|value| value.metric);
        let targets = self
            .tenants
            .cached_targets(&tenant.tenant_id)
            .await
            .map_err(unavailable)?
            .iter()
            .filter_map(Target::from_stored)
            .filter(|target| {
                i32::from(target.subject_kind) == proto_subject.kind
                    && i32::from(target.window_kind()) == proto_window.kind
            })
            .map(|target| {
                let value = count(target.counter);
                #[allow(clippy::cast_precision_loss)] // counters stay far below 2^52
                let progress = (value as f64 / target.threshold as f64).min(1.0);
                TargetProgress {
                    value: Some(target.display(value)),
                    target: Some(target.to_proto()),
                    progress,
                }
            })
            .collect();
        Ok(GetScorecardResponse {
            subject: Some(proto_subject),
            window: Some(proto_window_with_anchor(&proto_window, window)),
            values,
            targets,
            as_of: as_of.map(timestamp),
        })
    }
}

impl Api {
    /// GetJourney: a partner's enrolment, first sale, ranks (current = the highest level
    /// reached) and mentors, each from the earliest event that established it.
    async fn journey(
        &self,
        request: Request<GetJourneyRequest>,
    ) -> Result<GetJourneyResponse, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let namespace = self.current_namespace()?;
        let partner_id = request.into_inner().partner_id;
        check_id("partner_id", &partner_id)?;
        let as_of = namespace.progress.as_of().await.map_err(unavailable)?;
        let facts = namespace
            .store
            .journey_facts(&tenant.tenant_id, &partner_id)
            .await
            .map_err(unavailable)?;
        if facts.is_empty() {
            return Err(Status::not_found(format!(
                "partner `{partner_id}` has no events yet"
            )));
        }
        let time = |rank: &str| {
            rank_time(rank).ok_or_else(|| unavailable(format!("corrupt rank {rank:?}")))
        };
        let enrolled_at = match &facts.enrolment {
            Some((rank, _)) => Some(time(rank)?),
            None => None,
        };
        let days_since_enrolment =
            |at| enrolled_at.map_or(0, |enrolled| Calendar::whole_days(enrolled, at));
        let first_sale_at = match &facts.first_sale {
            Some(rank) => Some(time(rank)?),
            None => None,
        };
        let mut ranks = Vec::with_capacity(facts.ranks.len());
        for (level, name, rank) in &facts.ranks {
            let reached_at = time(rank)?;
            ranks.push(RankMilestone {
                rank_level: *level,
                rank_name: name.clone(),
                reached_at: Some(timestamp(reached_at)),
                days_to_rank: days_since_enrolment(reached_at),
            });
        }
        let mut mentors: Vec<MentorPeriod> = Vec::new();
        for (rank, assigned, group_id, mentor_id) in &facts.membership {
            let at = Some(timestamp(time(rank)?));
            let current = mentors
                .last_mut()
                .filter(|period| period.ended_at.is_none());
            match (assigned, current) {
                (true, Some(current)) if current.group_id == *group_id => {}
                (true, current) => {
                    if let Some(current) = current {
                        current.ended_at = at;
                    }
                    mentors.push(MentorPeriod {
                        mentor_id: mentor_id.clone(),
                        group_id: group_id.clone(),
                        started_at: at,
                        ended_at: None,
                    });
                }
                (false, Some(current)) if current.group_id == *group_id => current.ended_at = at,
                (false, _) => {}
            }
        }
        let current = facts.ranks.iter().max_by_key(|(level, _, _)| *level);
        Ok(GetJourneyResponse {
            partner_id,
            sponsor_id: facts
                .enrolment
                .map(|(_, sponsor)| sponsor)
                .unwrap_or_default(),
            enrolled_at: enrolled_at.map(timestamp),
            first_sale_at: first_sale_at.map(timestamp),
            has_first_sale: first_sale_at.is_some(),
            days_to_first_sale: first_sale_at.map_or(0, days_since_enrolment),
            current_rank_level: current.map_or(0, |(level, _, _)| *level),
            current_rank_name: current.map(|(_, name, _)| name.clone()).unwrap_or_default(),
            ranks,
            mentors,
            as_of: as_of.map(timestamp),
        })
    }

    /// What a group's scorecard has beyond its counters: the mentor's own feedback in the
    /// window, `group_size` (current mentees) and `retention_30d`: of the current mentees
    /// enrolled at least 30 × 24 h before the window's end (or now, if sooner), those with
    /// an active day in the 30 days ending with its last day, as a fraction of them.
    async fn group(
        namespace: &Namespace,
        tenant_id: &str,
        group_id: &str,
        window: Window,
        calendar: &Calendar,
    ) -> Result<(Vec<(Counter, i64)>, Vec<MetricValue>), Status> {
        let members = namespace
            .store
            .group_members(tenant_id, group_id)
            .await
            .map_err(unavailable)?;
        let mut feedback = vec![(Counter::FeedbackSum, 0), (Counter::FeedbackCount, 0)];
        if let Some(mentor_id) = &members.mentor_id {
            let mentor = namespace
                .store
                .counters(tenant_id, Subject::Partner(mentor_id), &window.buckets())
                .await
                .map_err(unavailable)?;
            for (counter, value) in &mut feedback {
                *value = mentor.get(counter).copied().unwrap_or(0);
            }
        }
        let mut values = vec![MetricValue {
            metric: Metric::GroupSize.into(),
            value: Some(metric_value::Value::Count(
                i64::try_from(members.mentee_ids.len()).unwrap_or(i64::MAX),
            )),
        }];
        let last_day = match window {
            Window::Day(day) | Window::Week(day) | Window::Month(day) => day,
            Window::Rolling { ending, .. } => ending,
            Window::Lifetime => calendar.local_day(Utc::now()),
        };
        let last_30_days = Window::Rolling {
            days: 30,
            ending: last_day,
        };
        // Eligible: enrolled at least 30 × 24 h before the window ends, or before now while
        // it has not ended (docs/spec.md §6).
        let window_end = calendar.start_of(last_day + chrono::Days::new(1));
        let (eligible, retained) = namespace
            .store
            .retention(
                tenant_id,
                &members.mentee_ids,
                window_end.min(Utc::now()),
                &last_30_days.buckets(),
            )
            .await
            .map_err(unavailable)?;
        values.push(MetricValue {
            metric: Metric::Retention30d.into(),
            value: Some(metric_value::Value::Fraction(fraction(
                i64::try_from(retained).unwrap_or(i64::MAX),
                i64::try_from(eligible).unwrap_or(i64::MAX),
            ))),
        });
        Ok((feedback, values))
    }

    /// GetLeaderboard: partners or groups ranked by one counted metric in a window.
    async fn leaderboard(
        &self,
        request: Request<GetLeaderboardRequest>,
    ) -> Result<GetLeaderboardResponse, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let namespace = self.current_namespace()?;
        let request = request.into_inner();
        let entry_kind = match SubjectKind::try_from(request.entry_kind) {
            Ok(kind @ (SubjectKind::Partner | SubjectKind::Group)) => kind,
            _ => {
                return Err(field_violation(
                    "entry_kind",
                    "must be SUBJECT_KIND_PARTNER or SUBJECT_KIND_GROUP",
                ));
            }
        };
        if !request.team_root_id.is_empty() {
            check_id("team_root_id", &request.team_root_id)?;
            ensure_known(
                &namespace,
                &tenant.tenant_id,
                Subject::Team(&request.team_root_id),
            )
            .await?;
        }
        let metric = Metric::try_from(request.metric).unwrap_or(Metric::Unspecified);
        let counter = Counter::of_metric(request.metric)
            .ok_or_else(|| field_violation("metric", NOT_COUNTED))?;
        let proto_window = request
            .window
            .ok_or_else(|| field_violation("window", "is required"))?;
        let window = window(&proto_window, &Calendar::new(tenant.time_zone))?;
        let page_size = page_size(request.page_size)?;
        let offset = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse::<usize>()
                .map_err(|_| field_violation("page_token", "is not a token this server issued"))?
        };
        let as_of = namespace.progress.as_of().await.map_err(unavailable)?;
        let (page, more) = self
            .ranking(
                &namespace,
                &tenant.tenant_id,
                entry_kind,
                &request.team_root_id,
                counter,
                &window.buckets(),
                offset,
                page_size,
            )
            .await?;
        let entries = (offset + 1..)
            .zip(page)
            .map(|(rank, (partner, value))| LeaderboardEntry {
                rank: u32::try_from(rank).unwrap_or(u32::MAX),
                subject: Some(mentorstream_proto::kpi::v1::Subject {
                    kind: entry_kind.into(),
                    id: partner,
                    mentor_id: String::new(),
                }),
                value: Some(MetricValue {
                    metric: metric.into(),
                    value: Some(if counter == Counter::SalesVolume {
                        metric_value::Value::Decimal(decimal(value))
                    } else {
                        metric_value::Value::Count(value)
                    }),
                }),
            })
            .collect::<Vec<_>>();
        Ok(GetLeaderboardResponse {
            next_page_token: if more {
                (offset + entries.len()).to_string()
            } else {
                String::new()
            },
            entries,
            as_of: as_of.map(timestamp),
        })
    }

    /// One page of a ranking: partners tenant-wide from the tenant's sorted sets; partners of a
    /// team (the root and their whole downline) and groups (tenant-wide, or those whose mentor
    /// is in the team) summed at query time. A group's feedback is its mentor's.
    #[allow(clippy::too_many_arguments)]
    async fn ranking(
        &self,
        namespace: &Namespace,
        tenant_id: &str,
        entry_kind: SubjectKind,
        team_root_id: &str,
        counter: Counter,
        buckets: &[crate::calendar::Bucket],
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, bool), Status> {
        let store = &namespace.store;
        if entry_kind == SubjectKind::Partner && team_root_id.is_empty() {
            return store
                .leaderboard(tenant_id, counter, buckets, offset, limit)
                .await
                .map_err(unavailable);
        }
        let team = if team_root_id.is_empty() {
            None
        } else {
            let downline = store
                .downline(tenant_id, team_root_id, MAX_RANKED)
                .await
                .map_err(|error| match error {
                    StoreError::TooLarge(limit) => Status::failed_precondition(format!(
                        "the team of `{team_root_id}` has more than {limit} partners; rank \
                         tenant-wide instead"
                    )),
                    other => unavailable(other),
                })?;
            Some(downline)
        };
        let subjects: Vec<(String, OwnedSubject)> = match (entry_kind, team) {
            (SubjectKind::Group, team) => {
                let members: Option<std::collections::BTreeSet<String>> =
                    team.map(|team| team.into_iter().collect());
                let feedback = matches!(counter, Counter::FeedbackSum | Counter::FeedbackCount);
                store
                    .groups(tenant_id)
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .filter(|(_, mentor)| members.as_ref().is_none_or(|team| team.contains(mentor)))
                    .map(|(group, mentor)| {
                        let subject = if feedback {
                            OwnedSubject::Partner(mentor)
                        } else {
                            OwnedSubject::Group(group.clone())
                        };
                        (group, subject)
                    })
                    .collect()
            }
            (_, team) => team
                .unwrap_or_default()
                .into_iter()
                .map(|partner| (partner.clone(), OwnedSubject::Partner(partner)))
                .collect(),
        };
        if subjects.len() > MAX_RANKED {
            return Err(Status::failed_precondition(format!(
                "more than {MAX_RANKED} groups to rank"
            )));
        }
        let ranked = store
            .rank(tenant_id, &subjects, counter, buckets)
            .await
            .map_err(unavailable)?;
        let more = ranked.len() > offset.saturating_add(limit);
        Ok((ranked.into_iter().skip(offset).take(limit).collect(), more))
    }

    /// GetSeries: one metric of one subject per day, week or month.
    async fn series(
        &self,
        request: Request<GetSeriesRequest>,
    ) -> Result<GetSeriesResponse, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let namespace = self.current_namespace()?;
        let request = request.into_inner();
        let (owned, _) = resolve(
            &namespace,
            &tenant.tenant_id,
            required(request.subject.as_ref())?,
        )
        .await?;
        let subject = owned.as_subject();
        let metric = Metric::try_from(request.metric).unwrap_or(Metric::Unspecified);
        let counter = match metric {
            Metric::FeedbackAvg => Counter::FeedbackSum,
            _ => Counter::of_metric(request.metric).ok_or_else(|| {
                field_violation(
                    "metric",
                    "must be a bucketed metric (not GROUP_SIZE, RETENTION_30D or unspecified)",
                )
            })?,
        };
        let granularity =
            match mentorstream_proto::kpi::v1::Granularity::try_from(request.granularity) {
                Ok(mentorstream_proto::kpi::v1::Granularity::Day) => Granularity::Day,
                Ok(mentorstream_proto::kpi::v1::Granularity::Week) => Granularity::Week,
                Ok(mentorstream_proto::kpi::v1::Granularity::Month) => Granularity::Month,
                _ => return Err(field_violation("granularity", "must be DAY, WEEK or MONTH")),
            };
        let from = required_date("from", request.from.as_ref())?;
        let to = required_date("to", request.to.as_ref())?;
        if from > to {
            return Err(field_violation(
                "to",
                format!("must not be before from ({from})"),
            ));
        }
        let points = crate::calendar::series(granularity, from, to);
        if points.len() > MAX_SERIES_POINTS {
            return Err(field_violation(
                "to",
                format!(
                    "a series has at most {MAX_SERIES_POINTS} points, this one would have {}",
                    points.len()
                ),
            ));
        }
        let as_of = namespace.progress.as_of().await.map_err(unavailable)?;
        let buckets: Vec<_> = points.iter().map(|(_, bucket)| *bucket).collect();
        // A group's feedback is its mentor's own.
        let mentor_id;
        let subject = match subject {
            Subject::Group(group_id)
                if matches!(counter, Counter::FeedbackSum | Counter::FeedbackCount) =>
            {
                mentor_id = namespace
                    .store
                    .group_members(&tenant.tenant_id, group_id)
                    .await
                    .map_err(unavailable)?
                    .mentor_id;
                match &mentor_id {
                    Some(mentor_id) => Subject::Partner(mentor_id),
                    None => subject,
                }
            }
            other => other,
        };
        let values = namespace
            .store
            .counters_by_bucket(&tenant.tenant_id, subject, &buckets)
            .await
            .map_err(unavailable)?;
        let points = points
            .into_iter()
            .zip(values)
            .map(|((start, _), counters)| {
                let count = |counter: Counter| counters.get(&counter).copied().unwrap_or(0);
                let value = match metric {
                    Metric::SalesVolume => metric_value::Value::Decimal(decimal(count(counter))),
                    Metric::FeedbackAvg => metric_value::Value::Fraction(fraction(
                        count(counter),
                        count(Counter::FeedbackCount),
                    )),
                    _ => metric_value::Value::Count(count(counter)),
                };
                SeriesPoint {
                    bucket_start: Some(start.into()),
                    value: Some(MetricValue {
                        metric: metric.into(),
                        value: Some(value),
                    }),
                }
            })
            .collect();
        Ok(GetSeriesResponse {
            points,
            as_of: as_of.map(timestamp),
        })
    }

    /// The active generation's state.
    pub(crate) fn current_namespace(&self) -> Result<Namespace, Status> {
        self.namespace
            .borrow()
            .clone()
            .ok_or_else(|| unavailable("the active KPI generation is not known yet"))
    }

    async fn tenant(&self, principal: &Principal) -> Result<Tenant, Status> {
        caller_tenant(&self.tenants, principal).await
    }

    pub(crate) async fn tenant_by_id(&self, tenant_id: &str) -> Result<Tenant, Status> {
        self.tenants
            .cached_tenant(tenant_id)
            .await
            .map_err(unavailable)
    }

    /// WatchKpis: the current scorecards of every requested (subject, window), then each
    /// again whenever an update touches one of its buckets; a watcher that falls behind gets
    /// them all afresh. Ends when the client goes away or the server shuts down.
    async fn watch(&self, request: Request<WatchKpisRequest>) -> Result<WatchStream, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        if request.subjects.is_empty() || request.subjects.len() > MAX_WATCHED {
            return Err(field_violation(
                "subjects",
                format!("must name 1 to {MAX_WATCHED} subjects"),
            ));
        }
        let windows = if request.windows.is_empty() {
            vec![mentorstream_proto::kpi::v1::Window {
                kind: WindowKind::Lifetime.into(),
                anchor: None,
            }]
        } else {
            request.windows
        };
        if windows.len() > MAX_WATCHED {
            return Err(field_violation(
                "windows",
                format!("must name at most {MAX_WATCHED} windows"),
            ));
        }
        let calendar = Calendar::new(tenant.time_zone);
        let namespace = self.current_namespace()?;
        let mut watched = Vec::new();
        for subject in &request.subjects {
            let (owned, subject) = resolve(&namespace, &tenant.tenant_id, subject).await?;
            for proto_window in &windows {
                let buckets = window(proto_window, &calendar)?.buckets();
                watched.push((owned.clone(), subject.clone(), *proto_window, buckets));
            }
        }
        let mut updates = self.hub.subscribe();
        let (sender, receiver) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let api = self.clone();
        tokio::spawn(async move {
            let send_all = |watched: Vec<_>| {
                let api = api.clone();
                let tenant = tenant.clone();
                let sender = sender.clone();
                async move {
                    for (_, subject, window, _) in watched {
                        if !api.send_update(&tenant, subject, window, &sender).await {
                            return false;
                        }
                    }
                    true
                }
            };
            if !send_all(watched.clone()).await {
                return;
            }
            loop {
                let published = tokio::select! {
                    () = sender.closed() => return,
                    published = updates.recv() => published,
                };
                let touched: Vec<_> = match published {
                    Ok(published) if *published.changed.tenant_id == *tenant.tenant_id => watched
                        .iter()
                        .filter(|(owned, _, _, buckets)| {
                            *owned == published.changed.subject
                                && buckets.contains(&published.changed.bucket)
                        })
                        .cloned()
                        .collect(),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => watched.clone(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if !send_all(touched).await {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }

    /// Explain: the parts of one subject's number in one bucket, a page at a time. A
    /// partner's are its events in (occurred_at, source, source_event_id) order; a group's
    /// its members' events while they were its members (its feedback is its mentor's); a
    /// team's the root's own events, then each direct recruit's team; the tenant's each
    /// top-level team.
    async fn explain_number(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<ExplainResponse, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let namespace = self.current_namespace()?;
        let request = request.into_inner();
        let (owned, _) = resolve(
            &namespace,
            &tenant.tenant_id,
            required(request.subject.as_ref())?,
        )
        .await?;
        let subject = owned.as_subject();
        let metric = Metric::try_from(request.metric).unwrap_or(Metric::Unspecified);
        let counter = Counter::of_metric(request.metric)
            .ok_or_else(|| field_violation("metric", NOT_COUNTED))?;
        let day = required_date("date", request.date.as_ref())?;
        let bucket =
            match mentorstream_proto::kpi::v1::Granularity::try_from(request.granularity) {
                Ok(mentorstream_proto::kpi::v1::Granularity::Day) => Window::Day(day),
                Ok(mentorstream_proto::kpi::v1::Granularity::Week) => Window::Week(day),
                Ok(mentorstream_proto::kpi::v1::Granularity::Month) => Window::Month(day),
                _ => return Err(field_violation("granularity", "must be DAY, WEEK or MONTH")),
            }
            .buckets()[0];
        let page_size = page_size(request.page_size)?;
        let after = if request.page_token.is_empty() {
            String::new()
        } else {
            hex::decode(&request.page_token)
                .ok()
                .and_then(|rank| String::from_utf8(rank).ok())
                .ok_or_else(|| field_violation("page_token", "is not a token this server issued"))?
        };
        let tenant_id = &tenant.tenant_id;
        let store = &namespace.store;
        let as_of = namespace.progress.as_of().await.map_err(unavailable)?;
        // (rank, partner, amount) of every contribution, in rank order.
        let mut contributions: Vec<(String, String, i64)> = Vec::new();
        // (team root, amount) of every team's part, by root.
        let mut teams: Vec<(String, i64)> = Vec::new();
        let value =
            match subject {
                Subject::Partner(partner_id) => {
                    for (rank, amount) in store
                        .logged_contributions(tenant_id, partner_id, counter, bucket)
                        .await
                        .map_err(unavailable)?
                    {
                        contributions.push((rank, partner_id.to_owned(), amount));
                    }
                    store
                        .counters_by_bucket(tenant_id, subject, &[bucket])
                        .await
                        .map_err(unavailable)?
                }
                Subject::Group(group_id)
                    if matches!(counter, Counter::FeedbackSum | Counter::FeedbackCount) =>
                {
                    let mentor_id = store
                        .group_members(tenant_id, group_id)
                        .await
                        .map_err(unavailable)?
                        .mentor_id
                        .unwrap_or_default();
                    for (rank, amount) in store
                        .logged_contributions(tenant_id, &mentor_id, counter, bucket)
                        .await
                        .map_err(unavailable)?
                    {
                        contributions.push((rank, mentor_id.clone(), amount));
                    }
                    store
                        .counters_by_bucket(tenant_id, Subject::Partner(&mentor_id), &[bucket])
                        .await
                        .map_err(unavailable)?
                }
                Subject::Group(group_id) => {
                    for member in store
                        .group_members_ever(tenant_id, group_id)
                        .await
                        .map_err(unavailable)?
                    {
                        if counter == Counter::ActiveDays {
                            // A day counts for the group under the mentee's earliest activity
                            // event of the day during membership (docs/spec.md §6).
                            for (rank, amount) in store
                                .group_active_days(tenant_id, &member, group_id, bucket)
                                .await
                                .map_err(unavailable)?
                            {
                                contributions.push((rank, member.clone(), amount));
                            }
                            continue;
                        }
                        let facts = store
                            .journey_facts(tenant_id, &member)
                            .await
                            .map_err(unavailable)?;
                        for (rank, amount) in store
                            .logged_contributions(tenant_id, &member, counter, bucket)
                            .await
                            .map_err(unavailable)?
                        {
                            if facts.group_at(&rank) == Some(group_id) {
                                contributions.push((rank, member.clone(), amount));
                            }
                        }
                    }
                    contributions.sort();
                    store
                        .counters_by_bucket(tenant_id, subject, &[bucket])
                        .await
                        .map_err(unavailable)?
                }
                Subject::Team(root) => {
                    for (rank, amount) in store
                        .logged_contributions(tenant_id, root, counter, bucket)
                        .await
                        .map_err(unavailable)?
                    {
                        contributions.push((rank, root.to_owned(), amount));
                    }
                    let recruits = store.recruits(tenant_id, root).await.map_err(unavailable)?;
                    teams = team_parts(store, tenant_id, recruits, counter, bucket).await?;
                    store
                        .counters_by_bucket(tenant_id, subject, &[bucket])
                        .await
                        .map_err(unavailable)?
                }
                Subject::Tenant => {
                    let roots = store.roots(tenant_id, MAX_RANKED).await.map_err(|error| {
                        match error {
                            StoreError::TooLarge(limit) => Status::failed_precondition(format!(
                                "the tenant has more than {limit} top-level teams; explain a team \
                             instead"
                            )),
                            other => unavailable(other),
                        }
                    })?;
                    teams = team_parts(store, tenant_id, roots, counter, bucket).await?;
                    store
                        .counters_by_bucket(tenant_id, subject, &[bucket])
                        .await
                        .map_err(unavailable)?
                }
            }
            .into_iter()
            .next()
            .and_then(|counters| counters.get(&counter).copied())
            .unwrap_or(0);
        let number = |amount: i64| {
            if counter == Counter::SalesVolume {
                decimal(amount)
            } else {
                mentorstream_proto::common::v1::Decimal {
                    value: amount.to_string(),
                }
            }
        };
        // Events first (their ranks start with digits), then teams by root (`~root`).
        let team_parts = teams.into_iter().map(|(root, amount)| {
            let contribution = Contribution {
                partner_id: root.clone(),
                amount: Some(number(amount)),
                subject: Some(mentorstream_proto::kpi::v1::Subject {
                    kind: SubjectKind::Team.into(),
                    id: root.clone(),
                    mentor_id: String::new(),
                }),
                ..Contribution::default()
            };
            (format!("~{root}"), contribution)
        });
        let mut page: Vec<(String, Contribution)> = contributions
            .into_iter()
            .filter_map(|(rank, partner_id, amount)| {
                // occurred_at micros \x1e source \x1e source_event_id
                let mut fields = rank.splitn(3, '\u{1e}');
                let (Some(_), Some(source), Some(source_event_id)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return None;
                };
                let contribution = Contribution {
                    source: source.to_owned(),
                    source_event_id: source_event_id.to_owned(),
                    partner_id,
                    occurred_at: rank_time(&rank).map(timestamp),
                    amount: Some(number(amount)),
                    subject: None,
                };
                Some((rank, contribution))
            })
            .chain(team_parts)
            .filter(|(key, _)| *key > after)
            .take(page_size + 1)
            .collect();
        let more = page.len() > page_size;
        page.truncate(page_size);
        let metric_value = metric_values(&BTreeMap::from([(counter, value)]))
            .into_iter()
            .find(|metric_value| metric_value.metric == i32::from(metric));
        Ok(ExplainResponse {
            value: metric_value,
            next_page_token: match page.last() {
                Some((rank, _)) if more => hex::encode(rank),
                _ => String::new(),
            },
            contributions: page
                .into_iter()
                .map(|(_, contribution)| contribution)
                .collect(),
            as_of: as_of.map(timestamp),
        })
    }

    /// Sends one scorecard as an update; `false` when the watcher is gone.
    async fn send_update(
        &self,
        tenant: &Tenant,
        subject: mentorstream_proto::kpi::v1::Subject,
        window: mentorstream_proto::kpi::v1::Window,
        sender: &tokio::sync::mpsc::Sender<Result<WatchKpisResponse, Status>>,
    ) -> bool {
        let answer = match self.current_namespace() {
            Ok(namespace) => self.scorecard(&namespace, tenant, subject, window).await,
            Err(status) => Err(status),
        };
        let message = answer.map(|scorecard| WatchKpisResponse {
            update: Some(KpiUpdate {
                tenant_id: tenant.tenant_id.clone(),
                subject: scorecard.subject,
                window: scorecard.window,
                values: scorecard.values,
                as_of: scorecard.as_of,
            }),
        });
        let failed = message.is_err();
        sender.send(message).await.is_ok() && !failed
    }
}

/// Each of `roots`' team number in `bucket`, zeros left out.
async fn team_parts(
    store: &crate::store::Store,
    tenant_id: &str,
    roots: Vec<String>,
    counter: Counter,
    bucket: crate::calendar::Bucket,
) -> Result<Vec<(String, i64)>, Status> {
    let mut parts = Vec::with_capacity(roots.len());
    for root in roots {
        let value = store
            .counters_by_bucket(tenant_id, Subject::Team(&root), &[bucket])
            .await
            .map_err(unavailable)?
            .into_iter()
            .next()
            .and_then(|counters| counters.get(&counter).copied())
            .unwrap_or(0);
        if value != 0 {
            parts.push((root, value));
        }
    }
    Ok(parts)
}

/// Partners in a team larger than this are not counted per query: its scorecard leaves out
/// PARTNERS and TEAM_DEPTH.
const MAX_TEAM_SHAPE: usize = 100_000;

/// What a team or the tenant is now: its partners and (teams) the levels of the downline
/// below the root.
async fn shape(
    namespace: &Namespace,
    tenant_id: &str,
    subject: Subject<'_>,
) -> Result<Vec<MetricValue>, Status> {
    let count = |metric: Metric, count: usize| MetricValue {
        metric: metric.into(),
        value: Some(metric_value::Value::Count(
            i64::try_from(count).unwrap_or(i64::MAX),
        )),
    };
    match subject {
        Subject::Tenant => {
            let partners = namespace
                .store
                .partner_count(tenant_id)
                .await
                .map_err(unavailable)?;
            Ok(vec![count(Metric::Partners, partners)])
        }
        Subject::Team(root) => {
            match namespace
                .store
                .downline_levels(tenant_id, root, MAX_TEAM_SHAPE)
                .await
            {
                Ok(levels) => Ok(vec![
                    count(Metric::Partners, levels.iter().sum()),
                    count(Metric::TeamDepth, levels.len().saturating_sub(1)),
                ]),
                Err(StoreError::TooLarge(_)) => Ok(Vec::new()),
                Err(error) => Err(unavailable(error)),
            }
        }
        Subject::Partner(_) | Subject::Group(_) => Ok(Vec::new()),
    }
}

fn unavailable(error: impl std::fmt::Display) -> Status {
    tracing::warn!(%error, "answering UNAVAILABLE");
    mentorstream_grpc::retry_later(
        "the KPI store cannot be read right now; retry",
        "KPI_STORE_UNAVAILABLE",
        mentorstream_grpc::RETRY_AFTER,
        [],
    )
}

/// A requested page size: the default for 0, refused above the largest.
fn page_size(requested: u32) -> Result<usize, Status> {
    match usize::try_from(requested).unwrap_or(usize::MAX) {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if size <= MAX_PAGE_SIZE => Ok(size),
        size => Err(field_violation(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE}, got {size}"),
        )),
    }
}

/// A partner or group id: present and no longer than ingest allows.
fn check_id<'a>(field: &str, id: &'a str) -> Result<&'a str, Status> {
    if id.is_empty() {
        Err(field_violation(field, "is required"))
    } else if id.chars().count() > MAX_ID_CHARS {
        Err(field_violation(
            field,
            format!("must be at most {MAX_ID_CHARS} characters"),
        ))
    } else {
        Ok(id)
    }
}

/// A request's `subject`, which it must carry.
fn required(
    subject: Option<&mentorstream_proto::kpi::v1::Subject>,
) -> Result<&mentorstream_proto::kpi::v1::Subject, Status> {
    subject.ok_or_else(|| field_violation("subject", "is required"))
}

/// A requested subject, checked and resolved: a group named by its mentor becomes that
/// mentor's group (the answer's subject carries both), and a subject the aggregator has never
/// seen is NOT_FOUND, so that a typo does not read as an inactive partner.
async fn resolve(
    namespace: &Namespace,
    tenant_id: &str,
    requested: &mentorstream_proto::kpi::v1::Subject,
) -> Result<(OwnedSubject, mentorstream_proto::kpi::v1::Subject), Status> {
    let by_mentor = !requested.mentor_id.is_empty();
    if by_mentor && requested.kind != i32::from(SubjectKind::Group) {
        return Err(field_violation(
            "subject.mentor_id",
            "names a group only: use it with SUBJECT_KIND_GROUP",
        ));
    }
    if by_mentor && !requested.id.is_empty() {
        return Err(field_violation(
            "subject.mentor_id",
            "give either subject.id or subject.mentor_id, not both",
        ));
    }
    if by_mentor {
        let mentor_id = check_id("subject.mentor_id", &requested.mentor_id)?;
        let group_id = group_of_mentor(namespace, tenant_id, mentor_id).await?;
        let resolved = mentorstream_proto::kpi::v1::Subject {
            id: group_id.clone(),
            ..requested.clone()
        };
        return Ok((OwnedSubject::Group(group_id), resolved));
    }
    let owned = match subject(requested)? {
        Subject::Partner(id) => OwnedSubject::Partner(id.to_owned()),
        Subject::Team(id) => OwnedSubject::Team(id.to_owned()),
        Subject::Group(id) => OwnedSubject::Group(id.to_owned()),
        Subject::Tenant => OwnedSubject::Tenant,
    };
    ensure_known(namespace, tenant_id, owned.as_subject()).await?;
    Ok((owned, requested.clone()))
}

/// NOT_FOUND, naming the kind of subject, unless the aggregator has a record of `subject`.
async fn ensure_known(
    namespace: &Namespace,
    tenant_id: &str,
    subject: Subject<'_>,
) -> Result<(), Status> {
    let unknown = match subject {
        Subject::Tenant => return Ok(()),
        Subject::Partner(id) => {
            format!("partner `{id}` is unknown: no accepted event names this partner")
        }
        Subject::Team(id) => {
            format!("team root `{id}` is unknown: no accepted event names this partner")
        }
        Subject::Group(id) => {
            format!("group `{id}` is unknown: no mentee has been assigned to a group of this id")
        }
    };
    let known = namespace
        .store
        .knows(tenant_id, subject)
        .await
        .map_err(unavailable)?;
    if known {
        Ok(())
    } else {
        Err(Status::not_found(unknown))
    }
}

/// The one group `mentor_id` leads.
async fn group_of_mentor(
    namespace: &Namespace,
    tenant_id: &str,
    mentor_id: &str,
) -> Result<String, Status> {
    let led: Vec<String> = namespace
        .store
        .groups(tenant_id)
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|(_, mentor)| mentor == mentor_id)
        .map(|(group_id, _)| group_id)
        .collect();
    match led.as_slice() {
        [] => Err(Status::not_found(format!(
            "mentor `{mentor_id}` has no group a mentee was ever assigned to"
        ))),
        [group_id] => Ok(group_id.clone()),
        several => Err(Status::failed_precondition(format!(
            "mentor `{mentor_id}` has {} groups ({}): name one by subject.id",
            several.len(),
            several
                .iter()
                .map(|group_id| format!("`{group_id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn subject(subject: &mentorstream_proto::kpi::v1::Subject) -> Result<Subject<'_>, Status> {
    let id = || {
        if subject.id.is_empty() {
            return Err(field_violation(
                "subject.id",
                "is required for partner, group and team subjects",
            ));
        }
        check_id("subject.id", &subject.id)
    };
    match SubjectKind::try_from(subject.kind) {
        Ok(SubjectKind::Partner) => Ok(Subject::Partner(id()?)),
        Ok(SubjectKind::Team) => Ok(Subject::Team(id()?)),
        Ok(SubjectKind::Tenant) => Ok(Subject::Tenant),
        Ok(SubjectKind::Group) => Ok(Subject::Group(id()?)),
        Ok(SubjectKind::Unspecified) | Err(_) => Err(field_violation(
            "subject.kind",
            "must be SUBJECT_KIND_PARTNER, SUBJECT_KIND_GROUP, SUBJECT_KIND_TEAM or \
             SUBJECT_KIND_TENANT",
        )),
    }
}

fn window(
    window: &mentorstream_proto::kpi::v1::Window,
    calendar: &Calendar,
) -> Result<Window, Status> {
    let anchor = match &window.anchor {
        None => calendar.local_day(Utc::now()),
        Some(date) => calendar_date("window.anchor", date)?,
    };
    Ok(match WindowKind::try_from(window.kind) {
        Ok(WindowKind::Day) => Window::Day(anchor),
        Ok(WindowKind::Week) => Window::Week(anchor),
        Ok(WindowKind::Month) => Window::Month(anchor),
        Ok(WindowKind::Rolling7d) => Window::Rolling {
            days: 7,
            ending: anchor,
        },
        Ok(WindowKind::Rolling30d) => Window::Rolling {
            days: 30,
            ending: anchor,
        },
        Ok(WindowKind::Rolling90d) => Window::Rolling {
            days: 90,
            ending: anchor,
        },
        Ok(WindowKind::Lifetime) => Window::Lifetime,
        Ok(WindowKind::Unspecified) | Err(_) => {
            return Err(field_violation(
                "window.kind",
                "must be one of DAY, WEEK, MONTH, ROLLING_7D, ROLLING_30D, ROLLING_90D, LIFETIME",
            ));
        }
    })
}

/// The request's window with the anchor it was resolved with (today, when none was given).
fn proto_window_with_anchor(
    requested: &mentorstream_proto::kpi::v1::Window,
    resolved: Window,
) -> mentorstream_proto::kpi::v1::Window {
    let anchor = match resolved {
        Window::Day(day) | Window::Week(day) | Window::Month(day) => Some(day),
        Window::Rolling { ending, .. } => Some(ending),
        Window::Lifetime => None,
    };
    mentorstream_proto::kpi::v1::Window {
        kind: requested.kind,
        anchor: anchor.map(Into::into),
    }
}

/// A calendar date of the request, or the field violation that says why not.
fn calendar_date(field: &str, date: &LocalDate) -> Result<NaiveDate, Status> {
    date.to_naive().ok_or_else(|| {
        field_violation(
            field,
            format!(
                "{:04}-{:02}-{:02} is not a calendar date",
                date.year, date.month, date.day
            ),
        )
    })
}

/// A required calendar date of the request.
fn required_date(field: &str, date: Option<&LocalDate>) -> Result<NaiveDate, Status> {
    calendar_date(
        field,
        date.ok_or_else(|| field_violation(field, "is required"))?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_need_a_kind_and_a_real_date() {
        let calendar = Calendar::new(chrono_tz::Europe::Moscow);
        let bad_date = mentorstream_proto::kpi::v1::Window {
            kind: WindowKind::Day.into(),
            anchor: Some(LocalDate {
                year: 2026,
                month: 2,
                day: 30,
            }),
        };
        let status = window(&bad_date, &calendar).expect_err("no such date");
        assert_eq!(
            status.message(),
            "window.anchor: 2026-02-30 is not a calendar date"
        );
        let no_kind = mentorstream_proto::kpi::v1::Window::default();
        assert_eq!(
            window(&no_kind, &calendar).expect_err("no kind").message(),
            "window.kind: must be one of DAY, WEEK, MONTH, ROLLING_7D, ROLLING_30D, \
             ROLLING_90D, LIFETIME"
        );
    }
}
