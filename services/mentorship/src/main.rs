//! The mentorship service as its own process (as on Kubernetes).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mentorstream_runtime::service_main(mentorstream_mentorship::SERVICE, |context| async move {
        let listeners = mentorstream_runtime::Listeners::bind(&mentorstream_mentorship::endpoints(
            &context.config,
        ))
        .await?;
        mentorstream_mentorship::run(context, listeners).await
    })
    .await
}
