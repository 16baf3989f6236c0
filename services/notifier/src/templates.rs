//! Message templates (minijinja), one per [`Kind`] and language, embedded in the binary. A
//! template's first line is the subject, then a blank line, then the body. Values are plain
//! text: chat-bots and e-mail both get text, so nothing is escaped.

use minijinja::Environment;

use crate::kinds::Kind;

/// Both languages there are templates for.
pub const LANGUAGES: [&str; 2] = ["en", "ru"];

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(
            (concat!("en/", $name), include_str!(concat!("../templates/en/", $name, ".txt"))),
            (concat!("ru/", $name), include_str!(concat!("../templates/ru/", $name, ".txt"))),
        )*]
    };
}

const SOURCES: [(&str, &str); 26] = templates!(
    "reminder_24h",
    "reminder_15m",
    "feedback_request",
    "first_sale",
    "first_sale_mentor",
    "goal_achieved",
    "goal_achieved_mentor",
    "rank_achieved",
    "rank_achieved_mentor",
    "inactive",
    "inactive_mentor",
    "at_risk_mentor",
    "weekly_digest",
);

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template}: {source}")]
    Render {
        template: String,
        source: minijinja::Error,
    },
    #[error("template {0} has no subject line followed by a blank line")]
    Shape(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug)]
pub struct Templates {
    environment: Environment<'static>,
}

impl Templates {
    pub fn new() -> Result<Self, TemplateError> {
        let mut environment = Environment::new();
        // A value a template names but the notification lacks is a bug, never an empty word.
        environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        environment.set_keep_trailing_newline(false);
        for (name, source) in SOURCES {
            environment
                .add_template(name, source)
                .map_err(|source| TemplateError::Render {
                    template: name.to_owned(),
                    source,
                })?;
        }
        Ok(Self { environment })
    }

    /// Renders `kind` in `language` (one of [`LANGUAGES`]) with `values`.
    pub fn render(
        &self,
        kind: Kind,
        language: &str,
        values: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        let name = format!("{language}/{}", kind.name());
        let render_error = |source| TemplateError::Render {
            template: name.clone(),
            source,
        };
        let text = self
            .environment
            .get_template(&name)
            .and_then(|template| template.render(values))
            .map_err(render_error)?;
        let (subject, body) = text
            .split_once("\n\n")
            .ok_or_else(|| TemplateError::Shape(name.clone()))?;
        Ok(Rendered {
            subject: subject.trim().to_owned(),
            body: body.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates() -> Templates {
        Templates::new().expect("templates parse")
    }

    #[test]
    fn a_reminder_reads_well_in_both_languages() {
        let values = json!({
            "role": "mentee", "topic": "Первые шаги", "mentee_count": 3,
            "starts_at_local": "2026-11-28 10:00", "time_zone": "Europe/Moscow",
            "duration_minutes": 15,
        });
        assert_eq!(
            templates()
                .render(Kind::Reminder24h, "ru", &values)
                .expect("ru"),
            Rendered {
                subject: "Завтра в 2026-11-28 10:00 у вас сессия наставничества".into(),
                body: "Ваша сессия наставничества «Первые шаги» начнётся 2026-11-28 10:00 \
                       (Europe/Moscow), длительность: 15 мин."
                    .into(),
            }
        );
        let mut mentor = values;
        mentor["role"] = json!("mentor");
        assert_eq!(
            templates()
                .render(Kind::Reminder24h, "en", &mentor)
                .expect("en")
                .body,
            "Your session \"Первые шаги\" with 3 mentee(s) starts on 2026-11-28 10:00 \
             (Europe/Moscow) and takes 15 minutes."
        );
    }

    #[test]
    fn an_at_risk_alert_names_the_overdue_milestones() {
        let values = json!({
            "mentee_id": "p-7", "group_id": "g-1", "program_id": "pilot", "day": 9,
            "behind": true, "overdue": ["first_session", "first_module"],
        });
        assert_eq!(
            templates()
                .render(Kind::AtRiskMentor, "en", &values)
                .expect("en"),
            Rendered {
                subject: "Your mentee p-7 is behind on day 9".into(),
                body: "p-7 has not reached a first session, a first training module by the \
                       programme's target. A short session this week can put them back on track."
                    .into(),
            }
        );
        let mut one = values;
        one["behind"] = json!(false);
        one["overdue"] = json!(["first_sale"]);
        assert_eq!(
            templates()
                .render(Kind::AtRiskMentor, "ru", &one)
                .expect("ru"),
            Rendered {
                subject: "Ваш подопечный p-7 в зоне риска: 9-й день".into(),
                body: "У p-7 к сроку программы нет: первая продажа. Короткая сессия на этой \
                       неделе поможет вернуться в график."
                    .into(),
            }
        );
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_word() {
        let error = templates()
            .render(Kind::FirstSale, "en", &json!({"volume": "10.00"}))
            .expect_err("days_to_first_sale is missing");
        assert!(
            error.to_string().starts_with("template en/first_sale:"),
            "{error}"
        );
    }

    #[test]
    fn every_template_has_a_subject_and_a_body() {
        for (name, source) in SOURCES {
            let (subject, body) = source.split_once("\n\n").expect(name);
            assert!(!subject.contains('\n'), "{name}: one subject line");
            assert!(!body.trim().is_empty(), "{name}: a body");
        }
    }
}
