// A message at warning level, with the SDK's defaults (it attaches a synthetic stack trace).
const Sentry = require("@sentry/node");

Sentry.init({ dsn: process.env.SENTRY_DSN, release: "node-compat@1.0", environment: "compat" });

async function main() {
  Sentry.captureMessage(`node message ${process.env.COMPAT_TAG}`, "warning");
  await Sentry.flush(10000);
}
main();
