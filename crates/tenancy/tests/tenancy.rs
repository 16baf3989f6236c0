//! Tenants and API keys against the real local PostgreSQL, each test in its own database.

use mentorstream_tenancy::{
    AuthError, Authenticate, NewTenant, Scope, Scopes, TenancyError, Tenants,
};
use mentorstream_testkit::{fresh_database, unique};

async fn tenants() -> Tenants {
    let base = mentorstream_config::Config::load(None).expect("defaults");
    let url = fresh_database(&base, "tenancy").await;
    let tenants = Tenants::connect(&url, 2).await.expect("connect");
    tenants.migrate().await.expect("migrate");
    tenants
}

fn new_tenant(name: &str, time_zone: &str) -> NewTenant {
    NewTenant {
        name: name.into(),
        time_zone: time_zone.into(),
        default_locale: "ru".into(),
    }
}

#[tokio::test]
async fn a_tenant_is_created_once_with_a_valid_time_zone() {
    let tenants = tenants().await;
    let name = unique("acme");
    let tenant = tenants
        .create_tenant(new_tenant(&name, "Europe/Moscow"))
        .await
        .expect("created");
    assert_eq!(tenant.name, name);
    assert_eq!(tenant.time_zone, chrono_tz::Europe::Moscow);
    assert_eq!(tenant.default_locale, "ru");
    assert_eq!(tenant.allowed_lateness.as_secs(), 35 * 24 * 3600);
    assert_eq!(tenant.inactivity_days, 7);
    assert_eq!(tenants.tenant(&name).await.expect("by name"), tenant);
    assert_eq!(
        tenants.tenant(&tenant.tenant_id).await.expect("by id"),
        tenant
    );

    let duplicate = tenants
        .create_tenant(new_tenant(&name, "Europe/Berlin"))
        .await
        .expect_err("same name");
    assert_eq!(
        duplicate.to_string(),
        format!("a tenant named `{name}` already exists")
    );
    let bad_zone = tenants
        .create_tenant(new_tenant("other", "Europe/Mosco"))
        .await
        .expect_err("bad zone");
    assert_eq!(
        bad_zone.to_string(),
        "unknown time zone `Europe/Mosco`: expected an IANA name such as Europe/Moscow"
    );
    // Refused requests changed nothing.
    let all = tenants.list_tenants().await.expect("list");
    assert_eq!(all, [tenant]);
}

#[tokio::test]
async fn keys_resolve_to_their_tenant_and_scopes_and_are_stored_only_as_hashes() {
    let tenants = tenants().await;
    let tenant = tenants
        .create_tenant(new_tenant("acme", "Asia/Novosibirsk"))
        .await
        .expect("created");
    let scopes: Scopes = "ingest,read".parse().expect("scopes");
    let issued = tenants.create_key("acme", scopes).await.expect("issued");
    assert_eq!(issued.tenant_id, tenant.tenant_id);

    let principal = tenants
        .authenticate(&issued.api_key)
        .await
        .expect("known key");
    assert_eq!(principal.tenant_id, tenant.tenant_id);
    assert_eq!(principal.key_id, issued.key_id);
    assert!(principal.scopes.contains(Scope::Ingest));
    assert!(principal.scopes.contains(Scope::Read));
    assert!(!principal.scopes.contains(Scope::Admin));

    let (stored_hash, stored_scopes): (Vec<u8>, Vec<String>) =
        sqlx::query_as("SELECT secret_hash, scopes FROM api_keys WHERE key_id = $1")
            .bind(&issued.key_id)
            .fetch_one(tenants.pool())
            .await
            .expect("row");
    let secret = issued.api_key.rsplit('_').next().expect("secret part");
    assert_eq!(stored_hash.len(), 32);
    assert_ne!(hex::encode(&stored_hash), secret);
    assert_eq!(stored_scopes, ["ingest", "read"]);
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ',') FROM api_keys t")
        .fetch_one(tenants.pool())
        .await
        .expect("dump");
    assert!(!dump.contains(secret), "the secret is not stored");

    // A key with a changed secret, an unknown key and a revoked key are all refused alike.
    let mut forged = issued.api_key.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == '0' { '1' } else { '0' });
    assert!(matches!(
        tenants.authenticate(&forged).await,
        Err(AuthError::Unknown)
    ));
    assert!(matches!(
        tenants.authenticate("ms_000000000000_00").await,
        Err(AuthError::Unknown)
    ));
    assert!(tenants.revoke_key(&issued.key_id).await.expect("revoked"));
    assert!(matches!(
        tenants.authenticate(&issued.api_key).await,
        Err(AuthError::Unknown)
    ));
    assert!(
        !tenants
            .revoke_key(&issued.key_id)
            .await
            .expect("second revoke")
    );
}

#[tokio::test]
async fn a_key_needs_a_known_tenant_and_a_scope() {
    let tenants = tenants().await;
    let err = tenants
        .create_key("nobody", "read".parse().expect("scopes"))
        .await
        .expect_err("unknown tenant");
    assert_eq!(err.to_string(), "no tenant with id or name `nobody`");
    tenants
        .create_tenant(new_tenant("acme", "UTC"))
        .await
        .expect("created");
    let err = tenants
        .create_key("acme", Scopes::default())
        .await
        .expect_err("no scopes");
    assert!(matches!(err, TenancyError::NoScopes));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(tenants.pool())
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn an_expiring_key_works_until_it_expires() {
    let tenants = tenants().await;
    let tenant = tenants
        .create_tenant(new_tenant("acme", "UTC"))
        .await
        .expect("created");
    let read = Scopes::default().with(Scope::Read);
    let living = tenants
        .create_expiring_key(
            &tenant.tenant_id,
            read,
            std::time::Duration::from_secs(3600),
        )
        .await
        .expect("issued");
    let principal = tenants
        .authenticate(&living.api_key)
        .await
        .expect("accepted");
    assert_eq!(principal.tenant_id, tenant.tenant_id);
    assert_eq!(principal.scopes, read);
    // Expired at once: refused like an unknown key.
    let expired = tenants
        .create_expiring_key(&tenant.tenant_id, read, std::time::Duration::ZERO)
        .await
        .expect("issued");
    assert!(matches!(
        tenants.authenticate(&expired.api_key).await,
        Err(AuthError::Unknown)
    ));
}

#[tokio::test]
async fn channels_are_checked_before_they_are_stored() {
    use mentorstream_tenancy::TenantChannels;
    let tenants = tenants().await;
    let tenant = tenants
        .create_tenant(new_tenant("acme", "UTC"))
        .await
        .expect("created");
    assert_eq!(
        tenants.channels(&tenant.tenant_id).await.expect("channels"),
        TenantChannels {
            daily_cap: 10,
            ..TenantChannels::default()
        }
    );
    let channels = TenantChannels {
        chatbot_url: "https://bot.example.com/hook".into(),
        chatbot_secret: "0123456789abcdef".into(),
        smtp_url: "smtp://127.0.0.1:2525".into(),
        email_from: "mentors@example.com".into(),
        daily_cap: 3,
    };
    tenants.set_channels("acme", &channels).await.expect("set");
    let refused = tenants
        .set_channels(
            "acme",
            &TenantChannels {
                smtp_url: "mail.example.com".into(),
                ..channels.clone()
            },
        )
        .await
        .expect_err("bad SMTP URL");
    assert_eq!(
        refused.to_string(),
        "smtp_url must start with smtp:// or smtps://"
    );
    assert_eq!(
        tenants.channels(&tenant.tenant_id).await.expect("channels"),
        channels
    );
}

/// Secrets at rest: channel secrets are stored sealed, read back in clear, re-sealed by a
/// rotation to a new key, after which the old key can go; a value stored in clear before keys
/// existed is read as is and sealed by the rotation.
#[tokio::test]
async fn channel_secrets_are_sealed_at_rest_and_rotate_to_a_new_key() {
    use mentorstream_tenancy::TenantChannels;
    use mentorstream_tenancy::sealed::Sealer;
    const A: &str = "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "b:HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";
    let plain = tenants().await;
    let pool = plain.pool().clone();
    let with =
        |keys: &str| Tenants::new(pool.clone()).with_sealer(Sealer::from_keys(keys).expect("keys"));
    let channels = |secret: &str| TenantChannels {
        chatbot_url: "https://bot.example.com/hook".into(),
        chatbot_secret: secret.into(),
        smtp_url: "smtps://mailer:p4ssw0rd@mail.example.com".into(),
        email_from: "mentors@example.com".into(),
        daily_cap: 10,
    };
    let stored = |tenant: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT chatbot_secret, smtp_url FROM tenants WHERE tenant_id = $1",
            )
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    let sealed = plain
        .create_tenant(new_tenant(&unique("sealed"), "Europe/Moscow"))
        .await
        .expect("tenant");
    let clear = plain
        .create_tenant(new_tenant(&unique("clear"), "Europe/Moscow"))
        .await
        .expect("tenant");
    // Before keys existed: in clear.
    plain
        .set_channels(&clear.tenant_id, &channels("clear-secret-0123456"))
        .await
        .expect("set");
    let a = with(A);
    a.set_channels(&sealed.tenant_id, &channels("sealed-secret-0123456"))
        .await
        .expect("set");
    let (secret, smtp) = stored(sealed.tenant_id.clone()).await;
    assert!(
        secret.starts_with("v1:a:") && smtp.starts_with("v1:a:"),
        "{secret} {smtp}"
    );
    assert!(!secret.contains("sealed-secret") && !smtp.contains("p4ssw0rd"));
    let read = a.channels(&sealed.tenant_id).await.expect("read");
    assert_eq!(read.chatbot_secret, "sealed-secret-0123456");
    assert_eq!(read.smtp_url, "smtps://mailer:p4ssw0rd@mail.example.com");
    assert_eq!(
        a.channels(&clear.tenant_id)
            .await
            .expect("clear")
            .chatbot_secret,
        "clear-secret-0123456"
    );

    // Rotation: B first, A kept; every secret re-sealed with B (the clear ones too).
    let both = with(&format!("{B},{A}"));
    assert_eq!(both.reseal_secrets().await.expect("resealed"), 4);
    assert_eq!(both.reseal_secrets().await.expect("again"), 0);
    for tenant in [&sealed, &clear] {
        let (secret, smtp) = stored(tenant.tenant_id.clone()).await;
        assert!(
            secret.starts_with("v1:b:") && smtp.starts_with("v1:b:"),
            "{secret} {smtp}"
        );
    }
    // A can go: B alone reads everything; A alone is told which key it lacks.
    let b = with(B);
    assert_eq!(
        b.channels(&clear.tenant_id)
            .await
            .expect("read")
            .chatbot_secret,
        "clear-secret-0123456"
    );
    let refused = with(A)
        .channels(&sealed.tenant_id)
        .await
        .expect_err("A is gone");
    assert_eq!(
        refused.to_string(),
        "a stored secret is sealed with key `b`, which secrets.keys does not hold"
    );
    // A sealed value moved to another tenant's row does not open.
    let (moved, _) = stored(sealed.tenant_id.clone()).await;
    sqlx::query("UPDATE tenants SET chatbot_secret = $2 WHERE tenant_id = $1")
        .bind(&clear.tenant_id)
        .bind(moved)
        .execute(&pool)
        .await
        .expect("moved");
    assert!(matches!(
        b.channels(&clear.tenant_id).await,
        Err(TenancyError::Sealed(_))
    ));
}

/// A partner's data key is created once, shared by concurrent callers, opens what it sealed,
/// and once destroyed is gone for good: no new key is ever made for the erased partner.
#[tokio::test]
async fn partner_data_keys_are_created_once_and_destroyed_for_good() {
    let tenants = tenants().await;
    let tenant = tenants
        .create_tenant(new_tenant(&unique("acme"), "Europe/Moscow"))
        .await
        .expect("created")
        .tenant_id;
    assert!(
        tenants
            .find_partner_data_key(&tenant, "maria")
            .await
            .expect("read")
            .is_none()
    );
    // Two requests enrolling the same partners at once get the same keys.
    let (first, second) = tokio::join!(
        tenants.partner_data_keys(&tenant, &["maria", "ivan"]),
        tenants.partner_data_keys(&tenant, &["ivan", "maria", "olga"]),
    );
    let (first, second) = (first.expect("keys"), second.expect("keys"));
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 3);
    let sealed = first["maria"]
        .seal(b"Maria", &tenant, "maria")
        .expect("sealed");
    assert_eq!(
        second["maria"]
            .open(&sealed, &tenant, "maria")
            .expect("opened"),
        b"Maria"
    );
    let found = tenants
        .find_partner_data_key(&tenant, "maria")
        .await
        .expect("read")
        .expect("a key");
    assert_eq!(
        found.open(&sealed, &tenant, "maria").expect("opened"),
        b"Maria"
    );

    assert!(
        tenants
            .destroy_partner_data_key(&tenant, "maria")
            .await
            .expect("destroyed")
    );
    assert!(
        !tenants
            .destroy_partner_data_key(&tenant, "maria")
            .await
            .expect("gone")
    );
    assert!(
        tenants
            .find_partner_data_key(&tenant, "maria")
            .await
            .expect("read")
            .is_none()
    );
    // No new key for an erased partner; a partner erased before they had one is marked too.
    let later = tenants
        .partner_data_keys(&tenant, &["maria", "petr"])
        .await
        .expect("keys");
    assert!(!later.contains_key("maria"));
    assert!(later.contains_key("petr"));
    assert!(
        !tenants
            .destroy_partner_data_key(&tenant, "anna")
            .await
            .expect("marked")
    );
    assert!(
        tenants
            .partner_data_keys(&tenant, &["anna"])
            .await
            .expect("keys")
            .is_empty()
    );
    // The others keep theirs.
    assert!(
        tenants
            .find_partner_data_key(&tenant, "ivan")
            .await
            .expect("read")
            .is_some()
    );
}
