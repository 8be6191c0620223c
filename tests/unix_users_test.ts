/**
 * System users (`UnixAuthorizer`), with real accounts that this test creates (`useradd`,
 * `chpasswd`) and removes: system passwords (yescrypt and SHA-512), the allowed and rejected
 * lists, the shell check, the anonymous user mapped to an account, and every file access made
 * with the logged-in user's own identity, two users at the same time included. Needs root; skipped
 * with a message otherwise.
 */
import assert from "node:assert/strict"
import { UnixAuthorizer, type UnixAuthorizerOptions } from "../src/auth/unix.ts"
import { nobodyCantRun, RawClient, startServer, type TestServer } from "./helpers.ts"

const decoder = new TextDecoder()

const run = (command: string, args: string[], input?: string) => {
  const child = new Deno.Command(command, {
    args,
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn()
  if (input !== undefined) {
    const writer = child.stdin.getWriter()
    writer.write(new TextEncoder().encode(input)).then(() => writer.close())
  }
  return child.output().then((out) => {
    if (out.code !== 0) throw new Error(`${command} ${args.join(" ")}: ${decoder.decode(out.stderr)}`)
    return decoder.decode(out.stdout)
  })
}

const missingTools = ["useradd", "userdel", "chpasswd", "groupadd", "groupdel", "getent", "setpriv"].filter((tool) =>
  new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null", stderr: "null" }).outputSync().code !== 0
)
const skip = Deno.uid() !== 0
  ? "not running as root"
  : missingTools.length > 0
  ? `missing ${missingTools.join(", ")} (packages passwd, libc-bin, util-linux)`
  : undefined
if (skip !== undefined) console.warn(`SKIPPED the system user tests: ${skip}`)

/** The accounts of one run, with names of their own. */
const tag = crypto.randomUUID().slice(0, 6)
const A = `ftpa${tag}`
const B = `ftpb${tag}`
const NOSHELL = `ftpc${tag}`
const GROUP = `ftpg${tag}`
const PASSWORD = { [A]: "yes-crypt pw", [B]: "sha512 pw", [NOSHELL]: "noshell pw" }

interface Account {
  readonly uid: number
  readonly gid: number
  readonly home: string
}

const accountOf = async (name: string): Promise<Account> => {
  const [, , uid, gid, , home] = (await run("getent", ["passwd", name])).trim().split(":")
  return { uid: Number(uid), gid: Number(gid), home }
}

const createAccounts = async () => {
  await run("groupadd", [GROUP])
  await run("useradd", ["-m", "-s", "/bin/bash", "-G", GROUP, A])
  await run("useradd", ["-m", "-s", "/bin/bash", B])
  await run("useradd", ["-m", "-s", "/usr/sbin/nologin", NOSHELL])
  await run("chpasswd", ["-c", "YESCRYPT"], `${A}:${PASSWORD[A]}\n`)
  await run("chpasswd", ["-c", "SHA512"], `${B}:${PASSWORD[B]}\n${NOSHELL}:${PASSWORD[NOSHELL]}\n`)
}

const removeAccounts = async () => {
  for (const name of [A, B, NOSHELL]) await run("userdel", ["-r", name]).catch(() => undefined)
  await run("groupdel", [GROUP]).catch(() => undefined)
}

const withUnixServer = async (
  options: UnixAuthorizerOptions,
  f: (server: TestServer) => Promise<void>,
  extra: { readonly writeLimit?: number; readonly jail?: "path" } = {},
) => {
  const server = await startServer({
    inMemory: true,
    authorizerLayer: UnixAuthorizer.layer(options),
    jail: extra.jail ?? "descriptor",
    ...(extra.writeLimit === undefined ? {} : { writeLimit: extra.writeLimit }),
  })
  try {
    await f(server)
  } finally {
    await server.close()
  }
}

const session = async (server: TestServer, user: string, password = PASSWORD[user]) => {
  const client = await RawClient.connectTo(server)
  await client.command(`USER ${user}`)
  const reply = await client.command(`PASS ${password}`)
  if (reply.code !== 230) {
    client.close()
    throw new Error(`login of ${user}: ${reply.lines.join("|")}`)
  }
  assert.equal((await client.command("TYPE I")).code, 200)
  return client
}

const loginCode = async (server: TestServer, user: string, password: string) => {
  const client = await RawClient.connectTo(server)
  try {
    await client.command(`USER ${user}`)
    return (await client.command(`PASS ${password}`)).code
  } finally {
    client.close()
  }
}

/** RETR `path`: the bytes, or the refusal's code. */
const retr = async (client: RawClient, path: string): Promise<string | number> => {
  const data = await client.passiveData()
  await client.send(`RETR ${path}`)
  const first = await client.readReply()
  if (first.code !== 150) {
    data.close()
    return first.code
  }
  const chunks: Uint8Array[] = []
  const buffer = new Uint8Array(65536)
  for (let n = await data.read(buffer); n !== null; n = await data.read(buffer)) chunks.push(buffer.slice(0, n))
  data.close()
  const last = await client.readReply()
  if (last.code !== 226) return last.code
  return decoder.decode(await new Blob(chunks as BlobPart[]).bytes())
}

/** STOR `text` at `path`: the final reply's code. */
const stor = async (client: RawClient, path: string, text: string): Promise<number> => {
  const data = await client.passiveData()
  await client.send(`STOR ${path}`)
  const first = await client.readReply()
  if (first.code !== 150) {
    data.close()
    return first.code
  }
  await data.write(new TextEncoder().encode(text))
  data.close()
  return (await client.readReply()).code
}

Deno.test({
  name: "system users: passwords, lists, shells, anonymous, and every file access with the user's own identity",
  ignore: skip !== undefined,
  fn: async (t) => {
    await removeAccounts()
    await createAccounts()
    try {
      const a = await accountOf(A)
      const b = await accountOf(B)
      await Deno.writeTextFile(`${a.home}/private.txt`, "A's secret")
      await Deno.chown(`${a.home}/private.txt`, a.uid, a.gid)
      await Deno.chmod(`${a.home}/private.txt`, 0o600)
      const groupId = Number((await run("getent", ["group", GROUP])).split(":")[2])
      await Deno.writeTextFile(`${a.home}/group.txt`, "for the group")
      await Deno.chown(`${a.home}/group.txt`, 0, groupId)
      await Deno.chmod(`${a.home}/group.txt`, 0o640)
      // Readable by B only through the directory: A's home lets others in (755 here).
      await Deno.chmod(a.home, 0o755)

      await t.step("yescrypt and SHA-512 passwords log in, in the home; a wrong password gets 530", async () => {
        await withUnixServer({}, async (server) => {
          const client = await session(server, A)
          assert.equal((await client.command("PWD")).text, `"${a.home}" is the current directory.`)
          client.close()
          ;(await session(server, B)).close()
          assert.equal(await loginCode(server, A, "not it"), 530)
          assert.equal(await loginCode(server, `nobody${tag}`, "x"), 530)
          assert.ok(server.logs.some((l) => l.includes(`USER '${A}' failed login: wrong password.`)))
          assert.ok(server.logs.some((l) => l.includes(`USER 'nobody${tag}' failed login: no such user.`)))
        })
      })

      await t.step("root is rejected by default; a user outside allowedUsers gets 530", async () => {
        await withUnixServer({}, async (server) => {
          assert.equal(await loginCode(server, "root", "whatever"), 530)
          assert.ok(server.logs.some((l) => l.includes("USER 'root' failed login: not allowed to log in")))
        })
        await withUnixServer({ allowedUsers: [A] }, async (server) => {
          assert.equal(await loginCode(server, B, PASSWORD[B]), 530)
          assert.equal(await loginCode(server, A, PASSWORD[A]), 230)
        })
        await withUnixServer({ rejectedUsers: [B] }, async (server) => {
          assert.equal(await loginCode(server, B, PASSWORD[B]), 530)
        })
      })

      await t.step("a shell not listed in /etc/shells gets 530 unless the check is off", async () => {
        await withUnixServer({}, async (server) => {
          assert.equal(await loginCode(server, NOSHELL, PASSWORD[NOSHELL]), 530)
          assert.ok(server.logs.some((l) => l.includes("shell /usr/sbin/nologin is not in /etc/shells")))
        })
        await withUnixServer({ requireValidShell: false }, async (server) => {
          assert.equal(await loginCode(server, NOSHELL, PASSWORD[NOSHELL]), 230)
        })
      })

      await t.step("anonymous logs in as the mapped account: reads what it may, writes nothing", async () => {
        await withUnixServer({ anonymousUser: B }, async (server) => {
          const client = await session(server, "anonymous", "guest@example.com")
          try {
            assert.equal((await client.command("PWD")).text, `"${b.home}" is the current directory.`)
            assert.equal(await retr(client, `${a.home}/private.txt`), 550)
            assert.equal(await stor(client, `${b.home}/anon.txt`, "x"), 550)
          } finally {
            client.close()
          }
        })
        await withUnixServer({}, async (server) => assert.equal(await loginCode(server, "anonymous", "x"), 530))
      })

      await t.step(
        "a 0600 file of A: A reads it, B gets 550; uploads belong to their uploader; groups apply",
        async () => {
          await withUnixServer({}, async (server) => {
            const ca = await session(server, A)
            const cb = await session(server, B)
            try {
              assert.equal(await retr(ca, `${a.home}/private.txt`), "A's secret")
              assert.equal(await retr(cb, `${a.home}/private.txt`), 550)
              assert.equal(await retr(ca, `${a.home}/group.txt`), "for the group")
              assert.equal(await retr(cb, `${a.home}/group.txt`), 550)
              assert.equal(await stor(cb, `${b.home}/up.txt`, "from B"), 226)
              const info = await Deno.stat(`${b.home}/up.txt`)
              assert.deepEqual([info.uid, info.gid], [b.uid, b.gid])
              assert.equal(await stor(cb, `${a.home}/intrusion.txt`, "x"), 550)
              assert.equal((await cb.command(`DELE ${a.home}/private.txt`)).code, 550)
              assert.equal((await cb.command(`MKD ${a.home}/dir`)).code, 550)
              assert.equal((await cb.command(`SITE CHMOD 644 ${a.home}/private.txt`)).code, 550)
              assert.equal((await ca.command(`SITE CHMOD 640 ${a.home}/private.txt`)).code, 200)
              assert.equal((await cb.command(`MKD ${b.home}/made`)).code, 257)
              assert.equal((await Deno.stat(`${b.home}/made`)).uid, b.uid)
              // What root alone may read stays root's: entering /root, a listing of it, a file in it.
              assert.equal((await cb.command("CWD /root")).code, 550)
              assert.equal((await cb.command("STAT /root")).code, 550)
              assert.equal(await retr(cb, "/root/.bashrc"), 550)
            } finally {
              ca.close()
              cb.close()
            }
          })
        },
      )

      await t.step("A and B, logged in at once and transferring, keep their own rights throughout", async () => {
        await Deno.writeFile(`${a.home}/big.bin`, new Uint8Array(2 << 20))
        await Deno.chown(`${a.home}/big.bin`, a.uid, a.gid)
        // 1 MiB/s per session: A's download lasts about 2 s, while both sessions work on.
        await withUnixServer({}, async (server) => {
          const downloader = await session(server, A)
          const ca = await session(server, A)
          const cb = await session(server, B)
          try {
            const download = retr(downloader, `${a.home}/big.bin`)
            let rounds = 0
            let finished = false
            download.finally(() => (finished = true))
            while (!finished || rounds < 5) {
              assert.equal(await retr(cb, `${a.home}/private.txt`), 550)
              assert.equal(await stor(cb, `${b.home}/b${rounds}.txt`, "b"), 226)
              assert.equal(await retr(ca, `${a.home}/private.txt`), "A's secret")
              assert.equal(await stor(ca, `${a.home}/a${rounds}.txt`, "a"), 226)
              assert.equal(await stor(ca, `${b.home}/from-a${rounds}.txt`, "a"), 550)
              rounds++
            }
            assert.equal(((await download) as string).length, 2 << 20)
            for (let i = 0; i < rounds; i++) {
              assert.equal((await Deno.stat(`${a.home}/a${i}.txt`)).uid, a.uid)
              assert.equal((await Deno.stat(`${b.home}/b${i}.txt`)).uid, b.uid)
            }
          } finally {
            downloader.close()
            ca.close()
            cb.close()
          }
        }, { writeLimit: 1 << 20 })
      })

      await t.step("with jail, the home is the user's / and nothing above it is reachable", async () => {
        await withUnixServer({ jail: true }, async (server) => {
          const client = await session(server, A)
          try {
            assert.equal((await client.command("PWD")).text, '"/" is the current directory.')
            assert.equal(await retr(client, "/private.txt"), "A's secret")
            assert.equal((await client.command(`CWD ${b.home}`)).code, 550)
          } finally {
            client.close()
          }
        })
      })

      await t.step("a filesystem that can't act as the user (the path jail) refuses the login", async () => {
        await withUnixServer({}, async (server) => {
          assert.equal(await loginCode(server, A, PASSWORD[A]), 530)
          assert.ok(server.logs.some((l) => l.includes("the filesystem can't act with a system user's identity")))
        }, { jail: "path" })
      })

      await t.step(
        "ftpd --unix-users serves them; without --allow-ffi or root it exits 2 naming what is missing",
        async () => {
          const cli = new URL("../src/cli.ts", import.meta.url).pathname
          const refused = await new Deno.Command(Deno.execPath(), {
            args: ["run", "--no-prompt", "--allow-net", "--allow-read", cli, "--unix-users", "-p", "0"],
            stdout: "piped",
            stderr: "piped",
          }).output()
          assert.equal(refused.code, 2)
          assert.match(decoder.decode(refused.stderr), /missing permission: FFI for --unix-users .*\(add --allow-ffi\)/)
          // Not root: the same command as the user nobody (setpriv, util-linux), with a cache of its own.
          const cantRun = nobodyCantRun(cli)
          if (cantRun !== undefined) console.warn(`SKIPPED: the not-root case of --unix-users: ${cantRun}`)
          const cache = cantRun === undefined ? await Deno.makeTempDir({ prefix: "ftpd-nobody-" }) : undefined
          if (cache !== undefined) {
            try {
              await Deno.chmod(cache, 0o777)
              const notRoot = await new Deno.Command("setpriv", {
                args: [
                  ...["--reuid=65534", "--regid=65534", "--clear-groups", "env", `HOME=${cache}`, `DENO_DIR=${cache}`],
                  ...[Deno.execPath(), "run", "--no-prompt", "--allow-ffi", "--allow-net", "--allow-read"],
                  ...[cli, "--unix-users", "-i", "127.0.0.1", "-p", "0"],
                ],
                stdout: "piped",
                stderr: "piped",
              }).output()
              assert.equal(notRoot.code, 2)
              assert.match(decoder.decode(notRoot.stderr), /^ftpd: error: --unix-users needs root: /m)
            } finally {
              await Deno.remove(cache, { recursive: true })
            }
          }
          const unknown = await new Deno.Command(Deno.execPath(), {
            args: ["run", "-A", cli, "--unix-users", "--unix-allowed-users", `${A},nosuch${tag}`, "-p", "0"],
            stdout: "piped",
            stderr: "piped",
          }).output()
          assert.equal(unknown.code, 2)
          assert.equal(decoder.decode(unknown.stderr).trim(), `ftpd: error: no such user nosuch${tag}`)
          const child = new Deno.Command(Deno.execPath(), {
            args: ["run", "-A", cli, "--unix-users", "--unix-allowed-users", `${A},${B}`, "-i", "127.0.0.1", "-p", "0"],
            stdout: "piped",
            stderr: "piped",
          }).spawn()
          let output = ""
          const drained = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
            new WritableStream({ write: (text) => void (output += text) }),
          )
          try {
            for (let i = 0; i < 300 && !/starting FTP server on 127\.0\.0\.1:\d+/.test(output); i++) {
              await new Promise((resolve) => setTimeout(resolve, 100))
            }
            const port = Number(/starting FTP server on 127\.0\.0\.1:(\d+)/.exec(output)?.[1])
            const client = await RawClient.connect(port)
            try {
              await client.login(A, PASSWORD[A])
              assert.equal((await client.command("TYPE I")).code, 200)
              assert.equal((await client.command("SIZE private.txt")).code, 213)
            } finally {
              client.close()
            }
          } finally {
            child.kill("SIGINT")
            await child.status
            await child.stdout.cancel()
            await drained
          }
        },
      )
    } finally {
      await removeAccounts()
    }
  },
})
