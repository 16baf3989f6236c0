// HTTP/JSON from TypeScript on Node 20 (its built-in fetch): enrol a partner, record an order,
// read the lifetime scorecard once `asOf` has passed the order's acceptance, print its orders
// and sales volume. `npm ci && npm start`.

const key = process.env.MENTORSTREAM_API_KEY; // make up writes it to .stack/demo/api-key
const ingest = process.env.MENTORSTREAM_INGEST_URL ?? "http://127.0.0.1:50051";
const kpi = process.env.MENTORSTREAM_KPI_URL ?? "http://127.0.0.1:50053";

interface MetricValue {
  metric: string;
  count?: string;
  decimal?: { value: string };
}
interface Scorecard {
  asOf?: string; // absent right after the services start: nothing is known to be applied
  values: MetricValue[];
}
interface IngestResponse {
  results: { status: string }[];
}

class Refused extends Error {
  constructor(readonly status: number, body: string) {
    super(`HTTP ${status}: ${body}`);
  }
}

// The JSON answer; 503 (UNAVAILABLE: always safe to retry) is retried after Retry-After.
async function post<T>(url: string, body: unknown): Promise<T> {
  for (let attempt = 0; attempt < 30; attempt++) {
    const answer = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (answer.ok) return (await answer.json()) as T;
    if (answer.status !== 503) throw new Refused(answer.status, await answer.text());
    const seconds = Number(answer.headers.get("retry-after") ?? "1");
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }
  throw new Error(`${url} stayed unavailable`);
}

async function main(): Promise<void> {
  if (!key) throw new Error("export MENTORSTREAM_API_KEY=$(cat .stack/demo/api-key)");
  const partner = process.env.PARTNER ?? `typescript-${Math.floor(Date.now() / 1000)}`;
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const common = { source: "readme", partnerId: partner, occurredAt: now };
  const ingested = await post<IngestResponse>(`${ingest}/v1/ingest/Ingest`, {
    events: [
      { ...common, sourceEventId: `enrol-${partner}`, partnerEnrolled: { displayName: "TypeScript Example" } },
      {
        ...common,
        sourceEventId: `order-${partner}`,
        orderPlaced: {
          orderId: partner,
          volume: { value: "49.50" },
          amount: { amount: { value: "99.00" }, currencyCode: "EUR" },
        },
      },
    ],
  });
  const accepted = Date.now();
  for (let attempt = 0; attempt < 300; attempt++) {
    try {
      const card = await post<Scorecard>(`${kpi}/v1/kpi/GetScorecard`, {
        subject: { kind: "SUBJECT_KIND_PARTNER", id: partner },
        window: { kind: "WINDOW_KIND_LIFETIME" },
      });
      // Milliseconds are enough: asOf's extra digits only make it later.
      if (card.asOf !== undefined && Date.parse(card.asOf) >= accepted) {
        const value = (metric: string) => card.values.find((entry) => entry.metric === metric);
        const orders = value("METRIC_ORDERS")?.count;
        const volume = value("METRIC_SALES_VOLUME")?.decimal?.value;
        const statuses = ingested.results.map((result) => result.status).join(", ");
        console.log(`${partner}: ${statuses}; orders ${orders}, sales volume ${volume}`);
        return;
      }
    } catch (error) {
      // NOT_FOUND until the enrolment is applied.
      if (!(error instanceof Refused && error.status === 404)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the scorecard of ${partner} did not catch up`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
