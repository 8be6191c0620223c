/**
 * A worker of `ftpd --workers N`: serves with the command line's configuration, sent by the
 * coordinator.
 *
 * @module
 */
import "../_no_async_hooks.ts"
import { cliServices, type CliServicesData } from "../_cli_services.ts"
import { serveInWorker } from "./worker.ts"

serveInWorker((start) => cliServices(start.data as CliServicesData, { serveMetrics: false }))
