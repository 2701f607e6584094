// @sentry/node as a user sets it up: an exception caught and captured, flushed before exit.
const Sentry = require("@sentry/node");

Sentry.init({ dsn: process.env.SENTRY_DSN, release: "node-compat@1.0", environment: "compat" });

async function main() {
  try {
    throw new TypeError(`node compat ${process.env.COMPAT_TAG}`);
  } catch (error) {
    Sentry.captureException(error);
  }
  await Sentry.flush(10000);
}
main();
