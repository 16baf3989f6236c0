//! A partner's notification preferences: where to reach them, in which language and time
//! zone, when not to, which categories they refuse and how many messages a day they accept.

use std::str::FromStr;

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone as _, Timelike as _, Utc};
use chrono_tz::Tz;
use mentorstream_proto::notification::v1 as proto;

use crate::kinds::{Category, Channel};

/// The most a partner may set as their daily cap.
pub const MAX_DAILY_CAP: u32 = 1000;
const MAX_ID_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preferences {
    pub partner_id: String,
    /// In order of preference; empty: every channel with an address.
    pub channels: Vec<Channel>,
    pub chatbot_user_id: String,
    pub email: String,
    /// Empty: the tenant's default.
    pub locale: String,
    /// None: the tenant's time zone.
    pub time_zone: Option<Tz>,
    pub quiet_hours: Option<QuietHours>,
    pub opted_out: Vec<Category>,
    /// 0: the tenant's default.
    pub daily_cap: u32,
}

/// A local period in which nothing is delivered, in minutes after midnight; it wraps past
/// midnight when `start > end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: u32,
    pub end: u32,
}

impl QuietHours {
    /// When a delivery at `now` must wait until, in `time_zone`; None when `now` is not quiet.
    pub fn deferral(self, now: DateTime<Utc>, time_zone: Tz) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&time_zone);
        let minute = local.hour() * 60 + local.minute();
        let quiet = if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        };
        if !quiet {
            return None;
        }
        let end = NaiveTime::from_hms_opt(self.end / 60, self.end % 60, 0)?;
        let mut day = local.date_naive();
        if minute >= self.end {
            day = day.succ_opt()?;
        }
        let mut wake = day.and_time(end);
        // A quiet period ending inside a daylight-saving gap ends when the gap does.
        loop {
            if let Some(at) = time_zone.from_local_datetime(&wake).earliest() {
                return Some(at.with_timezone(&Utc));
            }
            wake += TimeDelta::minutes(15);
        }
    }
}

/// A preference a caller got wrong: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// The language of the templates for `locale`: Russian or English.
pub fn language(locale: &str) -> Option<&'static str> {
    let primary = locale.split(['-', '_']).next()?.to_ascii_lowercase();
    match primary.as_str() {
        "ru" => Some("ru"),
        "en" => Some("en"),
        _ => None,
    }
}

/// The fields of Preferences an update may name, as `update_mask` paths.
pub const MASKABLE: [&str; 8] = [
    "channels",
    "chatbot_user_id",
    "email",
    "locale",
    "time_zone",
    "quiet_hours",
    "opted_out",
    "daily_cap",
];

/// `stored` with the fields of `update` that `mask` names (AIP-134): every field for `*`,
/// the fields `update` sets when there is no mask. An unknown path is refused.
pub fn merge(
    stored: proto::Preferences,
    update: proto::Preferences,
    mask: Option<&prost_types::FieldMask>,
) -> Result<proto::Preferences, Invalid> {
    // An empty mask is no mask (AIP-134).
    let Some(mask) = mask.filter(|mask| !mask.paths.is_empty()) else {
        return Ok(merge_set(stored, update));
    };
    if mask.paths.iter().any(|path| path == "*") {
        return Ok(update);
    }
    let mut merged = stored;
    for (index, path) in mask.paths.iter().enumerate() {
        match path.as_str() {
            "channels" => merged.channels.clone_from(&update.channels),
            "chatbot_user_id" => merged.chatbot_user_id.clone_from(&update.chatbot_user_id),
            "email" => merged.email.clone_from(&update.email),
            "locale" => merged.locale.clone_from(&update.locale),
            "time_zone" => merged.time_zone.clone_from(&update.time_zone),
            "quiet_hours" => merged.quiet_hours = update.quiet_hours,
            "opted_out" => merged.opted_out.clone_from(&update.opted_out),
            "daily_cap" => merged.daily_cap = update.daily_cap,
            other => {
                return Err(Invalid {
                    field: "update_mask.paths",
                    reason: format!(
                        "[{index}] `{other}` is not a field an update can write ({})",
                        MASKABLE.join(", ")
                    ),
                });
            }
        }
    }
    Ok(merged)
}

/// `stored` with every field `update` sets (non-empty).
fn merge_set(stored: proto::Preferences, update: proto::Preferences) -> proto::Preferences {
    let text = |new: String, old: String| if new.is_empty() { old } else { new };
    proto::Preferences {
        partner_id: update.partner_id,
        channels: if update.channels.is_empty() {
            stored.channels
        } else {
            update.channels
        },
        chatbot_user_id: text(update.chatbot_user_id, stored.chatbot_user_id),
        email: text(update.email, stored.email),
        locale: text(update.locale, stored.locale),
        time_zone: text(update.time_zone, stored.time_zone),
        quiet_hours: update.quiet_hours.or(stored.quiet_hours),
        opted_out: if update.opted_out.is_empty() {
            stored.opted_out
        } else {
            update.opted_out
        },
        daily_cap: if update.daily_cap == 0 {
            stored.daily_cap
        } else {
            update.daily_cap
        },
    }
}

impl Preferences {
    /// Checks what a caller sent, field by field.
    pub fn from_proto(preferences: proto::Preferences) -> Result<Self, Invalid> {
        let partner_id = preferences.partner_id.trim().to_owned();
        if partner_id.is_empty() {
            return Err(invalid("preferences.partner_id", "is required"));
        }
        if partner_id.chars().count() > MAX_ID_CHARS {
            return Err(invalid(
                "preferences.partner_id",
                format!("must be at most {MAX_ID_CHARS} characters"),
            ));
        }
        let mut channels = Vec::new();
        for raw in &preferences.channels {
            let channel = proto::Channel::try_from(*raw)
                .ok()
                .and_then(Channel::from_proto)
                .ok_or_else(|| {
                    invalid("preferences.channels", format!("{raw} is not a channel"))
                })?;
            if channels.contains(&channel) {
                return Err(invalid(
                    "preferences.channels",
                    format!("{} is listed twice", channel.name()),
                ));
            }
            channels.push(channel);
        }
        if preferences.chatbot_user_id.chars().count() > MAX_ID_CHARS {
            return Err(invalid(
                "preferences.chatbot_user_id",
                format!("must be at most {MAX_ID_CHARS} characters"),
            ));
        }
        let email = preferences.email.trim().to_owned();
        if !email.is_empty() && email.parse::<lettre::Address>().is_err() {
            return Err(invalid(
                "preferences.email",
                format!("`{email}` is not an e-mail address"),
            ));
        }
        if !preferences.locale.is_empty() && language(&preferences.locale).is_none() {
            return Err(invalid(
                "preferences.locale",
                format!(
                    "there are no templates for `{}`: use a Russian (ru) or English (en) locale",
                    preferences.locale
                ),
            ));
        }
        let time_zone = if preferences.time_zone.is_empty() {
            None
        } else {
            Some(Tz::from_str(&preferences.time_zone).map_err(|_| {
                invalid(
                    "preferences.time_zone",
                    format!(
                        "unknown time zone `{}`: expected an IANA name such as Europe/Moscow",
                        preferences.time_zone
                    ),
                )
            })?)
        };
        let quiet_hours = match preferences.quiet_hours {
            None => None,
            Some(quiet) => {
                let start = minutes(quiet.start, "preferences.quiet_hours.start")?;
                let end = minutes(quiet.end, "preferences.quiet_hours.end")?;
                if start == end {
                    return Err(invalid(
                        "preferences.quiet_hours",
                        "start and end are the same time; leave quiet_hours unset for none",
                    ));
                }
                Some(QuietHours { start, end })
            }
        };
        let mut opted_out = Vec::new();
        for raw in &preferences.opted_out {
            let category = proto::Category::try_from(*raw)
                .ok()
                .and_then(Category::from_proto)
                .ok_or_else(|| {
                    invalid("preferences.opted_out", format!("{raw} is not a category"))
                })?;
            if !opted_out.contains(&category) {
                opted_out.push(category);
            }
        }
        if preferences.daily_cap > MAX_DAILY_CAP {
            return Err(invalid(
                "preferences.daily_cap",
                format!(
                    "must be at most {MAX_DAILY_CAP}, got {}",
                    preferences.daily_cap
                ),
            ));
        }
        Ok(Self {
            partner_id,
            channels,
            chatbot_user_id: preferences.chatbot_user_id.trim().to_owned(),
            email,
            locale: preferences.locale,
            time_zone,
            quiet_hours,
            opted_out,
            daily_cap: preferences.daily_cap,
        })
    }

    pub fn to_proto(&self) -> proto::Preferences {
        let time_of_day = |minutes: u32| proto::TimeOfDay {
            hours: minutes / 60,
            minutes: minutes % 60,
        };
        proto::Preferences {
            partner_id: self.partner_id.clone(),
            channels: self
                .channels
                .iter()
                .map(|channel| channel.to_proto() as i32)
                .collect(),
            chatbot_user_id: self.chatbot_user_id.clone(),
            email: self.email.clone(),
            locale: self.locale.clone(),
            time_zone: self
                .time_zone
                .map(|zone| zone.name().to_owned())
                .unwrap_or_default(),
            quiet_hours: self.quiet_hours.map(|quiet| proto::QuietHours {
                start: Some(time_of_day(quiet.start)),
                end: Some(time_of_day(quiet.end)),
            }),
            opted_out: self
                .opted_out
                .iter()
                .map(|category| category.to_proto() as i32)
                .collect(),
            daily_cap: self.daily_cap,
        }
    }

    /// The address of `channel`, if the partner gave one.
    pub fn address(&self, channel: Channel) -> Option<&str> {
        let address = match channel {
            Channel::Chatbot => &self.chatbot_user_id,
            Channel::Email => &self.email,
        };
        (!address.is_empty()).then_some(address.as_str())
    }

    /// The stored preferences of `partner_id`, or the defaults (no address) when none.
    pub async fn load(
        executor: impl sqlx::PgExecutor<'_>,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Self, sqlx::Error> {
        let row: Option<PreferencesRow> = sqlx::query_as(
            "SELECT channels, chatbot_user_id, email, locale, time_zone, quiet_start, quiet_end, \
                    opted_out, daily_cap \
             FROM preferences WHERE tenant_id = $1 AND partner_id = $2",
        )
        .bind(tenant_id)
        .bind(partner_id)
        .fetch_optional(executor)
        .await?;
        Ok(match row {
            None => Self {
                partner_id: partner_id.to_owned(),
                ..Self::default()
            },
            Some(row) => Self {
                partner_id: partner_id.to_owned(),
                channels: row
                    .channels
                    .iter()
                    .filter_map(|name| Channel::from_name(name))
                    .collect(),
                chatbot_user_id: row.chatbot_user_id,
                email: row.email,
                locale: row.locale,
                time_zone: Tz::from_str(&row.time_zone).ok(),
                quiet_hours: match (row.quiet_start, row.quiet_end) {
                    (Some(start), Some(end)) => Some(QuietHours {
                        start: start.unsigned_abs(),
                        end: end.unsigned_abs(),
                    }),
                    _ => None,
                },
                opted_out: row
                    .opted_out
                    .iter()
                    .filter_map(|name| Category::from_name(name))
                    .collect(),
                daily_cap: row.daily_cap.unsigned_abs(),
            },
        })
    }

    pub async fn store(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        let names = |channels: &[Channel]| -> Vec<&'static str> {
            channels.iter().map(|channel| channel.name()).collect()
        };
        sqlx::query(
            "INSERT INTO preferences (tenant_id, partner_id, channels, chatbot_user_id, email, \
                 locale, time_zone, quiet_start, quiet_end, opted_out, daily_cap) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (tenant_id, partner_id) DO UPDATE SET channels = $3, \
                 chatbot_user_id = $4, email = $5, locale = $6, time_zone = $7, \
                 quiet_start = $8, quiet_end = $9, opted_out = $10, daily_cap = $11, \
                 updated_at = now()",
        )
        .bind(tenant_id)
        .bind(&self.partner_id)
        .bind(names(&self.channels))
        .bind(&self.chatbot_user_id)
        .bind(&self.email)
        .bind(&self.locale)
        .bind(self.time_zone.map(|zone| zone.name()).unwrap_or_default())
        .bind(self.quiet_hours.map(|quiet| quiet.start.cast_signed()))
        .bind(self.quiet_hours.map(|quiet| quiet.end.cast_signed()))
        .bind(
            self.opted_out
                .iter()
                .map(|category| category.name())
                .collect::<Vec<_>>(),
        )
        .bind(self.daily_cap.cast_signed())
        .execute(executor)
        .await?;
        Ok(())
    }
}

fn minutes(time: Option<proto::TimeOfDay>, field: &'static str) -> Result<u32, Invalid> {
    let time = time.ok_or_else(|| invalid(field, "is required"))?;
    if time.hours > 23 || time.minutes > 59 {
        return Err(invalid(
            field,
            format!(
                "{}:{:02} is not a time of day (00:00 to 23:59)",
                time.hours, time.minutes
            ),
        ));
    }
    Ok(time.hours * 60 + time.minutes)
}

#[derive(sqlx::FromRow)]
struct PreferencesRow {
    channels: Vec<String>,
    chatbot_user_id: String,
    email: String,
    locale: String,
    time_zone: String,
    quiet_start: Option<i32>,
    quiet_end: Option<i32>,
    opted_out: Vec<String>,
    daily_cap: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> proto::Preferences {
        proto::Preferences {
            partner_id: "p-1".into(),
            channels: vec![proto::Channel::Email.into()],
            chatbot_user_id: "tg-1".into(),
            email: "ann@example.com".into(),
            locale: "ru-RU".into(),
            time_zone: "Europe/Moscow".into(),
            quiet_hours: None,
            opted_out: vec![proto::Category::WeeklyDigest.into()],
            daily_cap: 5,
        }
    }

    #[test]
    fn an_update_without_a_mask_writes_only_what_it_sets() {
        let update = proto::Preferences {
            partner_id: "p-1".into(),
            email: "anna@example.com".into(),
            ..proto::Preferences::default()
        };
        let merged = merge(stored(), update, None).expect("merged");
        assert_eq!(
            merged,
            proto::Preferences {
                email: "anna@example.com".into(),
                ..stored()
            }
        );
    }

    #[test]
    fn a_mask_writes_exactly_its_fields_and_can_clear_them() {
        let update = proto::Preferences {
            partner_id: "p-1".into(),
            locale: "en".into(),
            ..proto::Preferences::default()
        };
        let mask = prost_types::FieldMask {
            paths: vec!["email".into(), "opted_out".into()],
        };
        let merged = merge(stored(), update.clone(), Some(&mask)).expect("merged");
        assert_eq!(
            merged,
            proto::Preferences {
                email: String::new(),
                opted_out: vec![],
                ..stored()
            },
            "the locale is not named; e-mail and opt-outs are cleared"
        );
        let everything = prost_types::FieldMask {
            paths: vec!["*".into()],
        };
        assert_eq!(
            merge(stored(), update.clone(), Some(&everything)),
            Ok(update)
        );
    }

    #[test]
    fn an_unknown_path_is_refused() {
        let mask = prost_types::FieldMask {
            paths: vec!["email".into(), "partner_id".into()],
        };
        let refused = merge(stored(), stored(), Some(&mask)).expect_err("unknown");
        assert_eq!(refused.field, "update_mask.paths");
        assert_eq!(
            refused.reason,
            "[1] `partner_id` is not a field an update can write (channels, chatbot_user_id, \
             email, locale, time_zone, quiet_hours, opted_out, daily_cap)"
        );
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    const MOSCOW: Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn quiet_hours_wrapping_midnight_defer_to_their_end() {
        let night = QuietHours {
            start: 22 * 60,
            end: 8 * 60,
        };
        // 23:30 and 02:00 Moscow wait until 08:00; 08:00 and 21:59 do not wait.
        assert_eq!(
            night.deferral(at("2026-11-26T20:30:00Z"), MOSCOW),
            Some(at("2026-11-27T05:00:00Z"))
        );
        assert_eq!(
            night.deferral(at("2026-11-26T23:00:00Z"), MOSCOW),
            Some(at("2026-11-27T05:00:00Z"))
        );
        assert_eq!(night.deferral(at("2026-11-27T05:00:00Z"), MOSCOW), None);
        assert_eq!(night.deferral(at("2026-11-27T18:59:00Z"), MOSCOW), None);
    }

    #[test]
    fn quiet_hours_within_a_day() {
        let lunch = QuietHours {
            start: 13 * 60,
            end: 14 * 60 + 30,
        };
        assert_eq!(
            lunch.deferral(at("2026-11-27T10:15:00Z"), MOSCOW),
            Some(at("2026-11-27T11:30:00Z"))
        );
        assert_eq!(lunch.deferral(at("2026-11-27T11:30:00Z"), MOSCOW), None);
    }

    #[test]
    fn quiet_hours_ending_in_a_daylight_saving_gap_end_after_it() {
        // Berlin skips 02:00..03:00 on 2026-03-29.
        let berlin = chrono_tz::Europe::Berlin;
        let night = QuietHours {
            start: 60,
            end: 2 * 60 + 30,
        };
        assert_eq!(
            night.deferral(at("2026-03-29T00:30:00Z"), berlin),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }

    fn valid() -> proto::Preferences {
        proto::Preferences {
            partner_id: "p-1".into(),
            channels: vec![proto::Channel::Email as i32, proto::Channel::Chatbot as i32],
            chatbot_user_id: "tg-1".into(),
            email: "anna@example.com".into(),
            locale: "ru-RU".into(),
            time_zone: "Asia/Yekaterinburg".into(),
            quiet_hours: Some(proto::QuietHours {
                start: Some(proto::TimeOfDay {
                    hours: 22,
                    minutes: 0,
                }),
                end: Some(proto::TimeOfDay {
                    hours: 7,
                    minutes: 30,
                }),
            }),
            opted_out: vec![proto::Category::WeeklyDigest as i32],
            daily_cap: 5,
        }
    }

    #[test]
    fn valid_preferences_round_trip() {
        let preferences = Preferences::from_proto(valid()).expect("valid");
        assert_eq!(preferences.channels, vec![Channel::Email, Channel::Chatbot]);
        assert_eq!(
            preferences.quiet_hours,
            Some(QuietHours {
                start: 1320,
                end: 450
            })
        );
        assert_eq!(preferences.to_proto(), valid());
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: Vec<(proto::Preferences, &str, &str)> = vec![
            (
                proto::Preferences {
                    partner_id: " ".into(),
                    ..valid()
                },
                "preferences.partner_id",
                "is required",
            ),
            (
                proto::Preferences {
                    channels: vec![1, 1],
                    ..valid()
                },
                "preferences.channels",
                "chatbot is listed twice",
            ),
            (
                proto::Preferences {
                    channels: vec![0],
                    ..valid()
                },
                "preferences.channels",
                "0 is not a channel",
            ),
            (
                proto::Preferences {
                    email: "anna".into(),
                    ..valid()
                },
                "preferences.email",
                "`anna` is not an e-mail address",
            ),
            (
                proto::Preferences {
                    locale: "de-DE".into(),
                    ..valid()
                },
                "preferences.locale",
                "there are no templates for `de-DE`: use a Russian (ru) or English (en) locale",
            ),
            (
                proto::Preferences {
                    time_zone: "Mars/Olympus".into(),
                    ..valid()
                },
                "preferences.time_zone",
                "unknown time zone `Mars/Olympus`: expected an IANA name such as Europe/Moscow",
            ),
            (
                proto::Preferences {
                    quiet_hours: Some(proto::QuietHours {
                        start: Some(proto::TimeOfDay {
                            hours: 24,
                            minutes: 0,
                        }),
                        end: None,
                    }),
                    ..valid()
                },
                "preferences.quiet_hours.start",
                "24:00 is not a time of day (00:00 to 23:59)",
            ),
            (
                proto::Preferences {
                    quiet_hours: Some(proto::QuietHours {
                        start: Some(proto::TimeOfDay {
                            hours: 8,
                            minutes: 0,
                        }),
                        end: Some(proto::TimeOfDay {
                            hours: 8,
                            minutes: 0,
                        }),
                    }),
                    ..valid()
                },
                "preferences.quiet_hours",
                "start and end are the same time; leave quiet_hours unset for none",
            ),
            (
                proto::Preferences {
                    opted_out: vec![9],
                    ..valid()
                },
                "preferences.opted_out",
                "9 is not a category",
            ),
            (
                proto::Preferences {
                    daily_cap: 1001,
                    ..valid()
                },
                "preferences.daily_cap",
                "must be at most 1000, got 1001",
            ),
        ];
        for (preferences, field, reason) in cases {
            assert_eq!(
                Preferences::from_proto(preferences),
                Err(Invalid {
                    field,
                    reason: reason.into()
                })
            );
        }
    }

    #[test]
    fn languages_follow_the_primary_subtag() {
        assert_eq!(language("ru-RU"), Some("ru"));
        assert_eq!(language("EN_gb"), Some("en"));
        assert_eq!(language("uk-UA"), None);
    }
}
