/**
 * Python's ftplib, driven by `python3 -c` scripts as a program would use it: `retrbinary`,
 * `storbinary`, `abort()` during a RETR, `FTP_TLS` with `prot_p()`, and `mlsd()`.
 */
import assert from "node:assert/strict"
import { fileHash, installed, LARGE, randomFile, runClient, withTempDir } from "./clients.ts"
import { makeCertificate, sparseFile, startServer, type TestServer } from "./helpers.ts"

const ignore = !installed("python3", "python3")

/**
 * The session every test runs, with `FTP` or `FTP_TLS`: download and upload with SHA-256 of what
 * arrived, an MLSD listing, and an ABOR of a download still running. It prints one JSON object.
 */
const SCRIPT = `
import ftplib, hashlib, io, json, ssl, sys
port, secure, cafile, upload_path = int(sys.argv[1]), sys.argv[2] == "tls", sys.argv[3], sys.argv[4]
if secure:
    context = ssl.create_default_context(cafile=cafile)
    ftp = ftplib.FTP_TLS(context=context, timeout=10)
else:
    ftp = ftplib.FTP(timeout=10)
ftp.connect("127.0.0.1", port)
ftp.login("user", "pass")
if secure:
    ftp.prot_p()
out = {"secure": isinstance(ftp.sock, ssl.SSLSocket)}
digest = hashlib.sha256()
out["retr"] = ftp.retrbinary("RETR remote.bin", digest.update, blocksize=65536)
out["retr_sha256"] = digest.hexdigest()
with open(upload_path, "rb") as f:
    out["stor"] = ftp.storbinary("STOR uploaded.bin", f, blocksize=65536)
out["mlsd"] = sorted([name, facts["type"], facts.get("size")] for name, facts in ftp.mlsd(facts=["type", "size"]))
conn = ftp.transfercmd("RETR huge.bin")
conn.recv(65536)
out["abort"] = ftp.abort()
out["after_abort"] = ftp.getline()
conn.close()
out["noop"] = ftp.voidcmd("NOOP")
ftp.quit()
print(json.dumps(out))
`

const session = async (server: TestServer, local: string, secure: boolean, cafile = "") => {
  const remoteHash = await randomFile(`${server.root}/remote.bin`, LARGE)
  const uploadHash = await randomFile(`${local}/upload.bin`, LARGE)
  // Far bigger than what the socket buffers hold: still running when ABOR comes.
  await sparseFile(`${server.root}/huge.bin`, 1 << 30)
  const run = await runClient("python3", [
    ...["-c", SCRIPT, String(server.port), secure ? "tls" : "plain", cafile, `${local}/upload.bin`],
  ])
  assert.equal(run.code, 0, run.stderr)
  const out = JSON.parse(run.stdout)
  assert.equal(out.secure, secure)
  assert.match(out.retr, /^226 /)
  assert.equal(out.retr_sha256, remoteHash)
  assert.match(out.stor, /^226 /)
  assert.equal(await fileHash(`${server.root}/uploaded.bin`), uploadHash)
  assert.deepEqual(out.mlsd, [
    ["huge.bin", "file", String(1 << 30)],
    ["remote.bin", "file", String(LARGE)],
    ["uploaded.bin", "file", String(LARGE)],
  ])
  // RFC 959: 426 for the aborted transfer, then 226 for the ABOR; the session goes on.
  assert.match(out.abort, /^426 /)
  assert.match(out.after_abort, /^226 /)
  assert.match(out.noop, /^200 /)
}

Deno.test({
  name: "Python ftplib: retrbinary and storbinary byte for byte, mlsd, and abort() during a RETR",
  ignore,
  fn: async () => {
    const server = await startServer()
    try {
      await withTempDir((local) => session(server, local, false))
    } finally {
      await server.close()
    }
  },
})

Deno.test({
  name: "Python ftplib: the same session over FTP_TLS with prot_p(), the certificate verified",
  ignore,
  fn: async () => {
    const cert = await makeCertificate()
    const server = await startServer({ tls: { cert: cert.cert, key: cert.key }, tlsDataRequired: true })
    try {
      await withTempDir((local) => session(server, local, true, cert.certFile))
    } finally {
      await server.close()
      await cert.remove()
    }
  },
})
