//! The ingest service as its own process (as on Kubernetes).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mentorstream_runtime::service_main(mentorstream_ingest::SERVICE, |context| async move {
        let listeners =
            mentorstream_runtime::Listeners::bind(&mentorstream_ingest::endpoints(&context.config))
                .await?;
        mentorstream_ingest::run(context, listeners).await
    })
    .await
}
