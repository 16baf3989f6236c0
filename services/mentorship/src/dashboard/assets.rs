//! The pages' static files, compiled into the binary (no CDN, nothing fetched at run time),
//! and the shell every page starts from.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest as _, Sha256};

use super::access::{Page, Refusal};

const SHELL: &str = include_str!("../../dashboard/shell.html");

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../dashboard/app.css"),
    },
];

/// One ETag per asset: browsers revalidate (`no-cache`) and get 304 until a release changes it.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body.as_bytes());
            let hex: String = digest[..8]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            format!("\"{hex}\"")
        })
        .collect()
});

pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|seen| seen.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// What a page's headers allow: its own scripts, styles and data only, and framing by the
/// tenant's back offices.
fn policy(frame_ancestors: &[String]) -> String {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
}

fn html(status: StatusCode, body: String, frame_ancestors: &[String]) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy(frame_ancestors)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The page: the shell with its language, page, subject and date.
pub fn page(
    page: Page,
    subject: &str,
    date: chrono::NaiveDate,
    time_zone: &str,
    locale: &str,
    frame_ancestors: &[String],
) -> Response {
    let title = match (locale, page) {
        ("ru", Page::Partner) => "Мои показатели",
        ("ru", Page::Mentor) => "Моя группа",
        ("ru", Page::Team) => "Моя команда",
        (_, Page::Partner) => "My progress",
        (_, Page::Mentor) => "My group",
        (_, Page::Team) => "My team",
    };
    // The subject last: a placeholder inside it stays text.
    let body = SHELL
        .replace("{{lang}}", locale)
        .replace("{{page}}", page.name())
        .replace("{{date}}", &date.to_string())
        .replace("{{time_zone}}", &escape(time_zone))
        .replace("{{title}}", title)
        .replace("{{subject}}", &escape(subject));
    html(StatusCode::OK, body, frame_ancestors)
}

/// A refused page, said in the page's language, with nothing about whom it named.
/// The refusal page in `locale`, framable by `frame_ancestors` (the tenant's, when the link is
/// genuine: the message then shows inside the back office's frame).
pub fn refused(refusal: &Refusal, locale: &str, frame_ancestors: &[String]) -> Response {
    let (title, advice) = if locale == "ru" {
        match refusal.status() {
            StatusCode::UNAUTHORIZED => (
                "Ссылка недействительна",
                "Срок действия ссылки истёк или она была изменена. Откройте страницу заново из личного кабинета.",
            ),
            StatusCode::FORBIDDEN => ("Нет доступа", "Эта ссылка не открывает эту страницу."),
            _ => ("Страница недоступна", "Попробуйте позже."),
        }
    } else {
        match refusal.status() {
            StatusCode::UNAUTHORIZED => (
                "This link does not work",
                "It expired or was changed. Open the page again from your back office.",
            ),
            StatusCode::FORBIDDEN => ("Not allowed", "This link does not open this page."),
            _ => ("Page unavailable", "Please try again later."),
        }
    };
    let body = format!(
        "<!doctype html><html lang=\"{locale}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/app.css\"></head>\
         <body><main class=\"refusal\"><h1>{title}</h1><p>{advice}</p>\
         <p class=\"refusal-code\"><code>{code}</code></p></main></body></html>",
        code = refusal.code()
    );
    html(refusal.status(), body, frame_ancestors)
}

/// `text` safe inside HTML text and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_an_id_stays_text() {
        assert_eq!(
            escape("\"><script>alert('x')</script>&"),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }

    #[test]
    fn only_the_tenants_back_offices_may_frame_a_page() {
        assert!(policy(&[]).ends_with("frame-ancestors 'none'"));
        assert!(
            policy(&[
                "https://a.example.com".into(),
                "https://b.example.com".into()
            ])
            .ends_with("frame-ancestors https://a.example.com https://b.example.com")
        );
    }

    #[test]
    fn the_shell_has_every_placeholder() {
        for placeholder in [
            "{{lang}}",
            "{{page}}",
            "{{subject}}",
            "{{time_zone}}",
            "{{date}}",
            "{{title}}",
        ] {
            assert!(SHELL.contains(placeholder), "{placeholder}");
        }
    }
}
