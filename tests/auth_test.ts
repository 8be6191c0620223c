import assert from "node:assert/strict"
import { Effect } from "effect"
import { samePassword } from "../src/auth/_compare.ts"
import { DummyAuthorizer } from "../src/auth/dummy.ts"
import { Authorizer } from "../src/auth/authorizer.ts"
import { AuthenticationFailed, AuthorizerError } from "../src/errors.ts"

/** A temporary home with `sub/`, `sub/deep/` and `sub/file.txt`, removed after `f`. */
const withHome = async (f: (home: string) => Promise<void> | void): Promise<void> => {
  const home = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-auth-" }))
  try {
    await Deno.mkdir(`${home}/sub/deep`, { recursive: true })
    await Deno.writeTextFile(`${home}/sub/file.txt`, "x")
    await f(home)
  } finally {
    await Deno.remove(home, { recursive: true })
  }
}

const throwsAuthorizerError = (f: () => unknown, message: RegExp) =>
  assert.throws(f, (e: unknown) => e instanceof AuthorizerError && message.test(e.message))

Deno.test("samePassword tells equal passwords from different ones of any length, whatever came before", () => {
  const long = "ü".repeat(3000)
  const cases: Array<[string, string, boolean]> = [
    ["secret", "secret", true],
    ["secret", "secreT", false],
    ["secret", "secret2", false],
    ["secret2", "secret", false],
    ["", "", true],
    ["", "x", false],
    ["pässwörd", "pässwörd", true],
    ["pässwörd", "passwörd", false],
    // Longer than the bytes compared by default: compared whole.
    [long, long, true],
    [long, long + "x", false],
    [long + "a", long + "b", false],
    // A comparison is not fooled by the bytes of the one before: a prefix of it is still different.
    ["abcdef", "abcdef", true],
    ["abc", "abcdef", false],
    ["abcdef", "abc", false],
    ["abc", "abc", true],
  ]
  for (const [given, stored, same] of cases) assert.equal(samePassword(given, stored), same, `${given} / ${stored}`)
})

Deno.test("addUser refuses a duplicate user, a missing home, a file as home and an unknown letter", () =>
  withHome((home) => {
    const auth = new DummyAuthorizer().addUser("bob", "pw", home)
    throwsAuthorizerError(() => auth.addUser("bob", "pw", home), /already exists/)
    throwsAuthorizerError(() => auth.addUser("al", "pw", `${home}/missing`), /no such directory/)
    throwsAuthorizerError(() => auth.addUser("al", "pw", `${home}/sub/file.txt`), /no such directory/)
    throwsAuthorizerError(() => auth.addUser("al", "pw", home, { perm: "elrx" }), /no such permission 'x'/)
    assert.equal(auth.hasUser("al"), false)
  }))

Deno.test("addUser stores defaults and a canonical home even when given through a symlink", () =>
  withHome(async (home) => {
    const link = `${home}-link`
    await Deno.symlink(home, link)
    try {
      const auth = new DummyAuthorizer().addUser("bob", "pw", link)
      assert.equal(auth.getHomeDir("bob"), home)
      assert.equal(auth.getPerms("bob"), "elr")
      assert.equal(auth.getMsgLogin("bob"), "Login successful.")
      assert.equal(auth.getMsgQuit("bob"), "Goodbye.")
    } finally {
      await Deno.remove(link)
    }
  }))

Deno.test("anonymous with write letters is allowed but warned about", () =>
  withHome((home) => {
    const quiet = new DummyAuthorizer().addAnonymous(home)
    assert.deepEqual(quiet.warnings, [])
    const loud = new DummyAuthorizer().addAnonymous(home, { perm: "elrwd" })
    assert.deepEqual(loud.warnings, ["write permissions assigned to anonymous user."])
    assert.equal(loud.hasPerm("anonymous", "w", home), true)
  }))

Deno.test("removeUser forgets the user and refuses an unknown one", () =>
  withHome((home) => {
    const auth = new DummyAuthorizer().addUser("bob", "pw", home).removeUser("bob")
    assert.equal(auth.hasUser("bob"), false)
    assert.equal(auth.hasPerm("bob", "r", home), false)
    throwsAuthorizerError(() => auth.removeUser("bob"), /no such user/)
  }))

Deno.test("overridePerm refuses an unknown user, the home itself, a path outside home and a file", () =>
  withHome((home) => {
    const auth = new DummyAuthorizer().addUser("bob", "pw", `${home}/sub`)
    throwsAuthorizerError(() => auth.overridePerm("al", `${home}/sub/deep`, "elr"), /no such user/)
    throwsAuthorizerError(() => auth.overridePerm("bob", `${home}/sub`, "elr"), /home directory/)
    throwsAuthorizerError(() => auth.overridePerm("bob", home, "elr"), /Path escapes user home directory/)
    throwsAuthorizerError(() => auth.overridePerm("bob", `${home}/sub/file.txt`, "elr"), /no such directory/)
    throwsAuthorizerError(() => auth.overridePerm("bob", `${home}/sub/deep`, "Z"), /no such permission/)
  }))

Deno.test("a non-recursive override covers the directory and its files, not its subdirectories", () =>
  withHome((home) => {
    const auth = new DummyAuthorizer().addUser("bob", "pw", home).overridePerm("bob", `${home}/sub`, "elrw")
    assert.equal(auth.hasPerm("bob", "w", home), false)
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub`), true)
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub/file.txt`), true)
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub/new-file.txt`), true, "a missing path counts as a file")
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub/deep`), false)
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub/deep/x.txt`), false)
    assert.equal(auth.hasPerm("bob", "w", `${home}/subway`), false, "a sibling with a common prefix")
    assert.equal(auth.hasPerm("bob", "w"), false, "without a path, the global letters")
  }))

Deno.test("a recursive override covers the whole tree; the most specific override wins", () =>
  withHome((home) => {
    const auth = new DummyAuthorizer()
      .addUser("bob", "pw", home, { perm: "elradfmwMT" })
      .overridePerm("bob", `${home}/sub`, "elr", true)
      .overridePerm("bob", `${home}/sub/deep`, "elrw")
    assert.equal(auth.hasPerm("bob", "w", `${home}/x.txt`), true)
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub/file.txt`), false)
    assert.equal(auth.hasPerm("bob", "w", `${home}/sub/deep/a.txt`), true)
    assert.equal(auth.hasPerm("bob", "d", `${home}/sub/deep/a.txt`), false)
  }))

Deno.test("authenticate accepts the right password and refuses a wrong one or an unknown user", () =>
  withHome(async (home) => {
    const auth = new DummyAuthorizer().addUser("bob", "pw", home, { msgLogin: "Hi.", msgQuit: "Bye." })
    const account = await Effect.runPromise(auth.authenticate("bob", "pw"))
    assert.deepEqual(account, { user: "bob", home, msgLogin: "Hi.", msgQuit: "Bye." })
    for (const [user, password] of [["bob", "pW"], ["bob", ""], ["bob", "pw "], ["al", "pw"], ["al", ""]]) {
      const error = await Effect.runPromise(Effect.flip(auth.authenticate(user, password)))
      assert.ok(error instanceof AuthenticationFailed)
      assert.deepEqual([error.user, error.message], [user, "Authentication failed."])
    }
  }))

Deno.test("anonymous logs in with any password, and only when configured", () =>
  withHome(async (home) => {
    const auth = new DummyAuthorizer()
    const refused = await Effect.runPromise(Effect.flip(auth.authenticate("anonymous", "a@b")))
    assert.equal(refused.message, "Anonymous access not allowed.")
    auth.addAnonymous(home)
    for (const password of ["", "guest@example.com", "anything"]) {
      assert.equal((await Effect.runPromise(auth.authenticate("anonymous", password))).home, home)
    }
  }))

Deno.test("DummyAuthorizer.layer provides the Authorizer and fails with AuthorizerError on a bad config", () =>
  withHome(async (home) => {
    const login = Effect.gen(function* () {
      const auth = yield* Authorizer
      return yield* auth.authenticate("bob", "pw")
    })
    const good = DummyAuthorizer.layer((a) => a.addUser("bob", "pw", home))
    assert.equal((await Effect.runPromise(Effect.provide(login, good))).user, "bob")
    const bad = DummyAuthorizer.layer((a) => a.addUser("bob", "pw", `${home}/missing`))
    const error = await Effect.runPromise(Effect.flip(Effect.provide(login, bad)))
    assert.ok(error instanceof AuthorizerError)
  }))

Deno.test("toLayer serves users added after the layer was made", () =>
  withHome(async (home) => {
    const auth = new DummyAuthorizer()
    const layer = auth.toLayer()
    auth.addUser("late", "pw", home, { perm: "elrw" })
    const result = await Effect.runPromise(
      Effect.gen(function* () {
        const authorizer = yield* Authorizer
        const account = yield* authorizer.authenticate("late", "pw")
        return [account.user, authorizer.hasPerm("late", "w", home)]
      }).pipe(Effect.provide(layer)),
    )
    assert.deepEqual(result, ["late", true])
  }))

Deno.test("description says, by home, who may log in and whether read-only or read-write, with the letters", () =>
  withHome((home) => {
    assert.equal(new DummyAuthorizer().description, "no users")
    const auth = new DummyAuthorizer().addAnonymous(home).addUser("bob", "pw", home, { perm: "elradfmwMT" })
    assert.equal(auth.description, `${home}: anonymous read-only (elr), user bob read-write (elradfmwMT)`)
    auth.addUser("carol", "pw", `${home}/sub`, { perm: "elrw" }).overridePerm("bob", `${home}/sub`, "elr", true)
    assert.equal(
      auth.description,
      `${home}: anonymous read-only (elr), user bob read-write (elradfmwMT, other letters in 1 directory); ` +
        `${home}/sub: user carol read-write (elrw)`,
    )
  }))

Deno.test("description names five users and counts the rest, so that the banner stays one line", () =>
  withHome((home) => {
    const auth = new DummyAuthorizer()
    for (let i = 1; i <= 8; i++) auth.addUser(`u${i}`, "pw", home)
    const description = auth.description
    assert.ok(description.includes("user u5 read-only (elr)") && !description.includes("u6"), description)
    assert.ok(description.endsWith("; and 3 more users"), description)
  }))

Deno.test("the Authorizer layer of a DummyAuthorizer carries its description, kept current", () =>
  withHome(async (home) => {
    const auth = new DummyAuthorizer().addAnonymous(home)
    const service = await Effect.runPromise(Effect.provide(
      Effect.gen(function* () {
        return yield* Authorizer
      }),
      auth.toLayer(),
    ))
    assert.equal(service.description, `${home}: anonymous read-only (elr)`)
    auth.addUser("bob", "pw", home)
    assert.equal(service.description, `${home}: anonymous read-only (elr), user bob read-only (elr)`)
  }))
