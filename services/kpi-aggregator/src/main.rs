//! The kpi service as its own process (as on Kubernetes).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mentorstream_runtime::service_main(mentorstream_kpi_aggregator::SERVICE, |context| async move {
        let listeners = mentorstream_runtime::Listeners::bind(
            &mentorstream_kpi_aggregator::endpoints(&context.config),
        )
        .await?;
        mentorstream_kpi_aggregator::run(context, listeners).await
    })
    .await
}
