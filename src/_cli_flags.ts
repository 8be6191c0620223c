/**
 * The flags of `ftpd` as data: the table `parseCli` reads and `--help` is generated from, with the
 * defaults taken from `resolveOptions()` so that the help text never drifts from the library.
 *
 * @module
 */
import { ALL_PERMISSIONS, READ_PERMISSIONS } from "./auth/authorizer.ts"
import { PASSIVE_ACCEPT_TIMEOUT } from "./data/channel.ts"
import { resolveOptions } from "./options.ts"

export interface Flag {
  readonly long: string
  readonly short?: string
  /** Present when the flag takes a value. */
  readonly metavar?: string
  /** The flag may be given more than once (its values are kept in order). */
  readonly multiple?: true
  readonly help: string
}

/** The library's defaults, as `--help` prints them. */
export const DEFAULTS = resolveOptions()

/** A default as `--help` shows it: `0` means the limit is off. */
const orNone = (value: number, none = "no limit"): string => value === 0 ? `0, ${none}` : String(value)

/** pyftpdlib's flags, in its order; the help text is generated from this table. */
export const FLAGS: ReadonlyArray<Flag> = [
  { long: "help", short: "h", help: "show this help message and exit" },
  { long: "version", short: "v", help: "print the version and exit" },
  {
    long: "interface",
    short: "i",
    metavar: "ADDRESS",
    help: `the interface to listen on (default: all interfaces, "${DEFAULTS.host}" dual stack)`,
  },
  { long: "port", short: "p", metavar: "PORT", help: `the port to listen on (default: ${DEFAULTS.port})` },
  {
    long: "write",
    short: "w",
    help: `grant write access (permissions "${ALL_PERMISSIONS}"; default: read-only, "${READ_PERMISSIONS}")`,
  },
  {
    long: "directory",
    short: "d",
    metavar: "PATH",
    help: "what to share: a directory, memory: (an empty tree in memory, gone when the server stops) or " +
      "s3://BUCKET[/PREFIX] (objects in an S3-compatible bucket) (default: current directory)",
  },
  {
    long: "mount",
    metavar: "AT=STORAGE[:ro]",
    multiple: true,
    help: "also serve STORAGE (a directory, memory: or s3://BUCKET[/PREFIX]) at the path AT of every user's tree, " +
      "read-only with :ro; repeatable (e.g. --mount /pub=/srv/pub:ro --mount /inbox=s3://bucket/inbox)",
  },
  {
    long: "s3-endpoint",
    metavar: "URL",
    help: "the S3-compatible service of s3:// storage (default: AWS, https://s3.REGION.amazonaws.com)",
  },
  { long: "s3-region", metavar: "REGION", help: "the region S3 requests are signed for (default: us-east-1)" },
  {
    long: "s3-path-style",
    help: "address buckets as ENDPOINT/BUCKET rather than BUCKET.ENDPOINT (most self-hosted services need it)",
  },
  { long: "nat-address", short: "n", metavar: "ADDRESS", help: "the NAT address to announce in PASV replies" },
  {
    long: "range",
    short: "r",
    metavar: "FROM-TO",
    help: "the range of TCP ports to use for passive connections (e.g. -r 8000-9000; default: any free port)",
  },
  { long: "debug", short: "D", help: "log every command and reply (passwords masked)" },
  {
    long: "username",
    short: "u",
    metavar: "USERNAME",
    help: "the single user who may log in (disables anonymous login; requires -P)",
  },
  { long: "password", short: "P", metavar: "PASSWORD", help: "the password of the -u user" },
  {
    long: "users",
    metavar: "FILE",
    help: "users from a file of hashed passwords, each with a home and permissions (managed with " +
      "'ftpd users'; reloaded on SIGHUP; not with -u, -d or -w)",
  },
  { long: "users-watch", help: "with --users: also reload the file whenever it changes" },
  {
    long: "unix-users",
    help: "the system's users log in with their system passwords, each in their home, every file access " +
      "with their own rights (needs root and --allow-ffi; not with -u, --users, -d or -w)",
  },
  {
    long: "unix-allowed-users",
    metavar: "LIST",
    help: "with --unix-users: only these users (comma-separated) may log in",
  },
  {
    long: "unix-rejected-users",
    metavar: "LIST",
    help: "with --unix-users: these users (comma-separated) may not log in (default: root)",
  },
  {
    long: "unix-anonymous-user",
    metavar: "NAME",
    help: "with --unix-users: let 'anonymous' log in (any password, read only) as this system user",
  },
  {
    long: "unix-no-shell-check",
    help: "with --unix-users: admit users whose shell is not listed in /etc/shells (default: refuse them)",
  },
  {
    long: "unix-jail",
    help: "with --unix-users: keep each user inside their home (default: the user starts in their home " +
      "and sees the whole filesystem, as the system lets them)",
  },
  {
    long: "timeout",
    metavar: "SECONDS",
    help: `idle control and stalled data connection timeout, 0 for none (default: ${DEFAULTS.timeout})`,
  },
  {
    long: "data-timeout",
    metavar: "SECONDS",
    help: "seconds a data transfer may stall before 426, 0 for none; a passive connection gets at most " +
      `${PASSIVE_ACCEPT_TIMEOUT} of them to arrive before 425 (default: --timeout, else ${DEFAULTS.dataTimeout})`,
  },
  {
    long: "login-timeout",
    metavar: "SECONDS",
    help: `seconds a connection may take to log in before 421, 0 for none (default: ${DEFAULTS.loginTimeout})`,
  },
  { long: "banner", metavar: "BANNER", help: `the greeting sent on connect (default: '${DEFAULTS.banner}')` },
  {
    long: "permit-foreign-addresses",
    help: "allow data connections from an IP address different than the control connection's",
  },
  { long: "permit-privileged-ports", help: "allow active data connections (PORT) to ports below 1024" },
  {
    long: "permit-special-mode-bits",
    help: "let SITE CHMOD set the setuid, setgid and sticky bits (default: only modes 000 to 777)",
  },
  {
    long: "encoding",
    metavar: "ENCODING",
    help: `the encoding of paths on the wire; only utf8 is supported (default: ${DEFAULTS.encoding})`,
  },
  { long: "use-localtime", help: "show times in listings in the local time zone (default: UTC)" },
  {
    long: "jail",
    metavar: "MODE",
    help: "how users are kept in the shared directory: descriptor (openat walks; needs --allow-ffi), path " +
      "(realpath checks; holds against FTP clients, not local processes swapping symlinks), or auto: " +
      "descriptor when --allow-ffi is granted (default: auto)",
  },
  {
    long: "max-cons",
    metavar: "N",
    help: `max number of simultaneous connections, 0 for no limit (default: ${DEFAULTS.maxCons})`,
  },
  {
    long: "max-cons-per-ip",
    metavar: "N",
    help: `max number of connections from the same IP address (default: ${orNone(DEFAULTS.maxConsPerIp)})`,
  },
  {
    long: "max-sessions-per-user",
    metavar: "N",
    help: `max number of sessions logged in as the same user; more get 530 at login (default: ${
      orNone(DEFAULTS.maxSessionsPerUser)
    })`,
  },
  {
    long: "max-login-attempts",
    metavar: "N",
    help: `failed logins before the connection is closed (default: ${DEFAULTS.maxLoginAttempts})`,
  },
  {
    long: "auth-failed-timeout",
    metavar: "SECONDS",
    help: `delay before the 530 that answers a bad password (default: ${DEFAULTS.authFailedTimeout})`,
  },
  {
    long: "ban-after-failures",
    metavar: "N",
    help: "failed logins from one IP address within --ban-window that ban it (421 at connect) for --ban-duration " +
      `(default: ${orNone(DEFAULTS.banAfterFailures, "never ban")})`,
  },
  {
    long: "ban-window",
    metavar: "SECONDS",
    help: `the period over which --ban-after-failures counts failed logins (default: ${DEFAULTS.banWindow})`,
  },
  { long: "ban-duration", metavar: "SECONDS", help: `how long a ban lasts (default: ${DEFAULTS.banDuration})` },
  {
    long: "max-commands-per-second",
    metavar: "N",
    help: `commands one session may send per second; a session sending more gets 421 and is closed (default: ${
      orNone(DEFAULTS.maxCommandsPerSecond)
    })`,
  },
  {
    long: "read-limit",
    metavar: "RATE",
    help: `upload bandwidth (STOR, APPE, STOU) of each session (default: ${orNone(DEFAULTS.readLimit)})`,
  },
  {
    long: "write-limit",
    metavar: "RATE",
    help: `download bandwidth (RETR and listings) of each session (default: ${orNone(DEFAULTS.writeLimit)})`,
  },
  {
    long: "user-read-limit",
    metavar: "RATE",
    help: `upload bandwidth of each user, shared by all of that user's sessions (default: ${
      orNone(DEFAULTS.userReadLimit)
    })`,
  },
  {
    long: "user-write-limit",
    metavar: "RATE",
    help: `download bandwidth of each user, shared by all of that user's sessions (default: ${
      orNone(DEFAULTS.userWriteLimit)
    })`,
  },
  {
    long: "global-read-limit",
    metavar: "RATE",
    help: `upload bandwidth of the whole server (default: ${orNone(DEFAULTS.globalReadLimit)})`,
  },
  {
    long: "global-write-limit",
    metavar: "RATE",
    help: `download bandwidth of the whole server (default: ${orNone(DEFAULTS.globalWriteLimit)})`,
  },
  {
    long: "atomic-uploads",
    help: "store uploads under a hidden temporary name and rename them into place only when complete; " +
      "REST before STOR is refused (default: off)",
  },
  {
    long: "shutdown-grace",
    metavar: "SECONDS",
    help: "seconds the first SIGINT or SIGTERM lets running transfers finish before every session left is cut " +
      `(a second signal cuts at once), 0 for no wait (default: ${DEFAULTS.shutdownGrace})`,
  },
  {
    long: "workers",
    metavar: "N",
    help: "serve with N workers sharing the port (threads of this process; 'auto': one per core), with " +
      "limits, bans and bandwidth kept once for all and the passive range split between them (default: 1)",
  },
  {
    long: "proxy-protocol",
    help: "expect HAProxy's PROXY protocol header (v1 or v2) on connections from --proxy-trusted balancers: " +
      "the client's address is the one it names (default: off)",
  },
  {
    long: "proxy-trusted",
    metavar: "CIDRS",
    help: "the balancers trusted to send PROXY headers, comma-separated addresses or ranges " +
      "(with --proxy-protocol; default: 127.0.0.0/8,::1)",
  },
  {
    long: "no-hash",
    help: "turn off the checksum commands HASH, XCRC, XMD5, XSHA1, XSHA256 and XSHA512: 502, and not in FEAT " +
      "(default: on)",
  },
  {
    long: "max-hashes",
    metavar: "N",
    help: `most checksums computed at once by the whole server; one over it gets 450 (default: ${
      orNone(DEFAULTS.maxHashes)
    })`,
  },
  { long: "tls", help: "enable FTPS: AUTH TLS on the control port, PROT P data connections (requires --certfile)" },
  {
    long: "certfile",
    metavar: "PATH",
    help: "the PEM certificate for --tls (a chain may follow it; the key too, if --keyfile is not given)",
  },
  { long: "keyfile", metavar: "PATH", help: "the PEM private key of the certificate (default: the certfile)" },
  {
    long: "tls-control-required",
    help: "refuse USER and PASS until the control connection is secured with AUTH TLS (with --tls)",
  },
  { long: "tls-data-required", help: "refuse PASV, EPSV, PORT and EPRT until PROT P (with --tls)" },
  {
    long: "implicit-tls-port",
    metavar: "PORT",
    help: "also listen on this port with implicit TLS, TLS from the first byte (conventionally 990; with --tls)",
  },
  {
    long: "require-session-reuse",
    help: "refuse a PROT P data connection that does not resume a TLS session (RFC 4217 10.2; with --tls)",
  },
  // Monitoring, logs and upload actions.
  {
    long: "metrics",
    metavar: "HOST:PORT",
    help: "serve Prometheus metrics on http://HOST:PORT/metrics (default: off)",
  },
  {
    long: "log-format",
    metavar: "FORMAT",
    help: "pyftpdlib, or json: one JSON object per line (default: pyftpdlib)",
  },
  {
    long: "log-file",
    metavar: "FILE",
    help: "append the log to FILE instead of standard error; SIGHUP reopens it, for logrotate",
  },
  {
    long: "xferlog",
    metavar: "FILE",
    help: "log each file transfer to FILE in the xferlog format of wu-ftpd, ProFTPD and vsftpd; SIGHUP reopens it",
  },
  {
    long: "on-upload",
    metavar: "PROGRAM",
    help: "run PROGRAM (no shell, no arguments) after each completed upload, with FTPD_PATH, FTPD_SIZE, " +
      "FTPD_USER, FTPD_REMOTE_ADDRESS and more in its environment",
  },
  {
    long: "webhook",
    metavar: "URL",
    help: "POST a JSON event to URL for every upload, download, delete, rename, login and failed login",
  },
  {
    long: "action-concurrency",
    metavar: "N",
    help: `--on-upload programs and --webhook POSTs running at once, each (default: ${DEFAULTS.actionConcurrency})`,
  },
  {
    long: "action-queue",
    metavar: "N",
    help: `upload actions waiting to run, each; more are dropped and logged (default: ${DEFAULTS.actionQueue})`,
  },
  {
    long: "action-timeout",
    metavar: "SECONDS",
    help: "seconds an --on-upload program (then killed) or a --webhook POST may take " +
      `(default: ${DEFAULTS.actionTimeout})`,
  },
]

/** Flags that only mean something with `--tls`. */
export const TLS_ONLY = [
  "certfile",
  "keyfile",
  "tls-control-required",
  "tls-data-required",
  "implicit-tls-port",
  "require-session-reuse",
]

/** Flags that only mean something with `--unix-users`. */
export const UNIX_ONLY = [
  "unix-allowed-users",
  "unix-rejected-users",
  "unix-anonymous-user",
  "unix-no-shell-check",
  "unix-jail",
]

/** The text of `--help`. */
export const USAGE = `usage: ftpd [options]
       ftpd users add|passwd|del|list ... (manage a --users file; ftpd users --help)

Start a standalone FTP server sharing one directory: anonymous and read-only unless told otherwise.

Options:
${
  FLAGS.map((f) => `  ${f.short ? `-${f.short}, ` : ""}--${f.long}${f.metavar ? ` ${f.metavar}` : ""}\n      ${f.help}`)
    .join("\n")
}

Values:
  N         a whole number >= 0
  SECONDS   a number of seconds >= 0, fractions allowed (e.g. 0.5)
  RATE      bytes per second, with an optional K, M or G suffix (powers of 1024: 1M = 1048576); 0 for no limit

Deno permissions, checked before the server starts:
  --allow-net             listen on the interface and port, and on the passive ports
  --allow-read=PATH       read the shared directory
  --allow-write=PATH      write the shared directory (only with -w)
  --allow-read=FILE       read the --certfile and --keyfile (only with --tls)
  --allow-net=HOST:PORT   listen on the --implicit-tls-port
  --allow-ffi             the descriptor jail, and native TLS on PROT P passive data connections;
                          with --unix-users, the system's password check and each user's file rights
  --allow-read=FILE       read the --users file, and each of its users' homes (write too for writers)
  --allow-net=HOST:PORT   listen on --metrics; reach the --webhook's host and the OTLP collector
  --allow-write=FILE      the --log-file and the --xferlog
  --allow-run=PROGRAM     run the --on-upload program
  --allow-env=OTEL_*      read the OpenTelemetry variables: OTEL_EXPORTER_OTLP_ENDPOINT turns on traces
  --allow-net=HOST        reach the S3 service of s3:// storage (HOST is BUCKET.ENDPOINT-HOST without --s3-path-style)
  --allow-env=AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN
                          read the S3 credentials (s3:// storage)
  --allow-read=DIR, --allow-write=DIR   each local directory of --mount (write only with -w and without :ro)

Example: deno run --allow-net --allow-read=. --allow-write=. --allow-ffi src/cli.ts -w -p 2121`
