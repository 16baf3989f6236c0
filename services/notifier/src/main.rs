//! The notifier service as its own process (as on Kubernetes).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mentorstream_runtime::service_main(mentorstream_notifier::SERVICE, |context| async move {
        let listeners = mentorstream_runtime::Listeners::bind(&mentorstream_notifier::endpoints(
            &context.config,
        ))
        .await?;
        mentorstream_notifier::run(context, listeners).await
    })
    .await
}
