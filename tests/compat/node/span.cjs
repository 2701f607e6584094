// A traced job with one child span: @sentry/node 11 streams them as span v2 items (no
// transaction). Prints the trace id for the test to look up.
const Sentry = require("@sentry/node");

Sentry.init({
  dsn: process.env.SENTRY_DSN,
  release: "node-compat@1.0",
  environment: "compat",
  tracesSampleRate: 1.0,
});

async function main() {
  Sentry.startSpan({ name: `node job ${process.env.COMPAT_TAG}`, op: "task" }, (segment) => {
    Sentry.startSpan({ name: "SELECT 1", op: "db" }, () => {});
    console.log(segment.spanContext().traceId);
  });
  await Sentry.flush(10000);
}
main();
