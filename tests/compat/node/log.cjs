// A structured log through the SDK's logger (enableLogs), with one attribute.
const Sentry = require("@sentry/node");

Sentry.init({
  dsn: process.env.SENTRY_DSN,
  release: "node-compat@1.0",
  environment: "compat",
  enableLogs: true,
});

async function main() {
  Sentry.logger.warn(`node log ${process.env.COMPAT_TAG}`, { answer: 42 });
  await Sentry.flush(10000);
}
main();
