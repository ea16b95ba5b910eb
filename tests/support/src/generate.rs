//! `generate`: a copy of the demo fixture plus N rows shaped like a real Blocklet Server's.
//!
//! Rows go to the tables that grow in real installs: `server.db` `audit_logs`, `notifications`,
//! `passport_logs`, `traffic_insights`, and in the first app's `blocklet.db` `user_sessions`,
//! `webhook_attempts`, `audit_logs`. Users (and, in `server.db`, their passports) are added first
//! so that every foreign key PostgreSQL enforces holds. Values follow the 1.17.12 schema
//! (`tests/reference/blocklet-1.17.12/schema-facts.json`): NOT NULL columns always set, enum
//! columns only take their PostgreSQL labels, text stays inside the smaller of the SQLite and
//! PostgreSQL varchar limits, timestamps are Sequelize's `YYYY-MM-DD HH:MM:SS.mmm +00:00`,
//! booleans 0/1, JSON columns hold nested objects. Everything is drawn from a seeded PRNG, so a
//! (rows, seed) pair always gives the same data. The files stay in WAL mode, like the fixture.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use rusqlite::{Connection, params};

use crate::rng::{Rng, date_only, days_from_civil, sequelize_timestamp};
use crate::{fixture_dir, try_copy_tree};

/// Rows per SQLite transaction while generating.
const TX_ROWS: usize = 100_000;

/// The last timestamp generated rows carry: a little before the fixture was made.
fn end_ms() -> i64 {
    (days_from_civil(2026, 11, 25) * 86_400 + 19 * 3600) * 1000
}

/// Generated rows span this much time before [`end_ms`].
const SPAN_MS: i64 = 400 * 86_400_000;

/// Shares of the requested rows, per mille, in generation order.
const SHARES: [(Target, u64); 7] = [
    (Target::ServerAuditLogs, 250),
    (Target::Notifications, 150),
    (Target::PassportLogs, 150),
    (Target::TrafficInsights, 50),
    (Target::UserSessions, 150),
    (Target::WebhookAttempts, 100),
    (Target::AppAuditLogs, 150),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    ServerAuditLogs,
    Notifications,
    PassportLogs,
    TrafficInsights,
    UserSessions,
    WebhookAttempts,
    AppAuditLogs,
}

/// Bump when the generated data changes shape, so cached data dirs are made again.
const GENERATOR_VERSION: u32 = 1;

/// The file in a generated dir that says what it holds.
const MARKER: &str = ".bench-generated";

/// What `generate` made (or found), for the summary line.
pub struct Generated {
    pub data_dir: PathBuf,
    /// (database file relative to the data dir, table) → rows added; empty when reused.
    pub added: BTreeMap<(String, String), u64>,
    pub seconds: f64,
    /// `out` already held this (rows, seed) data: nothing was done.
    pub reused: bool,
}

fn marker_text(rows: u64, seed: u64) -> String {
    format!("generator={GENERATOR_VERSION} rows={rows} seed={seed}\n")
}

/// Copy the fixture to `out` and add `rows` rows. `out` must not exist, be empty, or already
/// hold exactly this (rows, seed) data (then it is reused as is). The data is built in
/// `out.partial` and renamed, so an interrupted run never leaves a half-made `out`.
pub fn generate(rows: u64, seed: u64, out: &Path) -> Result<Generated> {
    let started = Instant::now();
    if fs::read_to_string(out.join(MARKER)).ok().as_deref() == Some(marker_text(rows, seed).as_str()) {
        return Ok(Generated {
            data_dir: out.join(".blocklet-server"),
            added: BTreeMap::new(),
            seconds: 0.0,
            reused: true,
        });
    }
    if out.exists() {
        let empty = fs::read_dir(out)?.next().is_none();
        ensure!(empty, "{} exists and does not hold this data; pick another --out or remove it", out.display());
        fs::remove_dir(out)?;
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let tmp = PathBuf::from(partial);
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let added = fill(rows, seed, &tmp)?;
    fs::write(tmp.join(MARKER), marker_text(rows, seed))?;
    fs::rename(&tmp, out).with_context(|| format!("rename {} -> {}", tmp.display(), out.display()))?;
    Ok(Generated {
        data_dir: out.join(".blocklet-server"),
        added,
        seconds: started.elapsed().as_secs_f64(),
        reused: false,
    })
}

/// The copy and the rows, into `out` (which does not exist).
fn fill(rows: u64, seed: u64, out: &Path) -> Result<BTreeMap<(String, String), u64>> {
    let src = fixture_dir();
    ensure!(src.join(".blocklet-server/config.yml").is_file(), "demo fixture not found at {}", src.display());
    try_copy_tree(&src, out)?;
    let data_dir = out.join(".blocklet-server");
    let server_did = config_did(&data_dir.join("config.yml"))?;
    let app_dir = first_app_dir(&data_dir)?;
    let app_did = app_dir.file_name().map(|n| n.to_string_lossy().into_owned()).context("app dir name")?;

    let mut counts = BTreeMap::<Target, u64>::new();
    let mut left = rows;
    for (i, (t, share)) in SHARES.iter().enumerate() {
        let n = if i + 1 == SHARES.len() { left } else { (rows * share / 1000).min(left) };
        left -= n;
        counts.insert(*t, n);
    }
    let mut rng = Rng::new(seed);
    let mut added = BTreeMap::new();

    // ---- core/server.db
    {
        let path = data_dir.join("core/server.db");
        let mut db = open(&path)?;
        let n_users = (rows / 2000).max(20);
        let ctx = Ctx {
            server_did: server_did.clone(),
            app_dids: all_app_dids(&data_dir)?,
            users: Vec::new(),
            passports: Vec::new(),
        };
        let mut ctx = ctx;
        ctx.users = existing(&db, "SELECT did FROM users")?;
        ctx.passports = existing(&db, "SELECT id FROM passports")?;
        let mut r = rng.fork(1);
        let (new_users, new_passports) = add_users(&mut db, &mut r, &mut ctx, n_users, true)?;
        added.insert(("core/server.db".into(), "users".into()), new_users);
        added.insert(("core/server.db".into(), "passports".into()), new_passports);
        let mut r = rng.fork(2);
        let n = counts[&Target::ServerAuditLogs];
        add_audit_logs(&mut db, &mut r, &ctx, &server_did, n, 32)?;
        added.insert(("core/server.db".into(), "audit_logs".into()), n);
        let mut r = rng.fork(3);
        let n = counts[&Target::Notifications];
        add_notifications(&mut db, &mut r, &ctx, n)?;
        added.insert(("core/server.db".into(), "notifications".into()), n);
        let mut r = rng.fork(4);
        let n = counts[&Target::PassportLogs];
        add_passport_logs(&mut db, &mut r, &ctx, n)?;
        added.insert(("core/server.db".into(), "passport_logs".into()), n);
        let mut r = rng.fork(5);
        let n = counts[&Target::TrafficInsights];
        add_traffic_insights(&mut db, &mut r, &ctx, n)?;
        added.insert(("core/server.db".into(), "traffic_insights".into()), n);
        close(db, &path)?;
    }

    // ---- data/<first app>/blocklet.db
    {
        let path = app_dir.join("blocklet.db");
        let rel = format!("data/{app_did}/blocklet.db");
        let mut db = open(&path)?;
        let mut ctx = Ctx {
            server_did: server_did.clone(),
            app_dids: vec![app_did.clone()],
            users: existing(&db, "SELECT did FROM users")?,
            passports: Vec::new(),
        };
        let mut r = rng.fork(11);
        let (new_users, _) = add_users(&mut db, &mut r, &mut ctx, (rows / 500).max(20), false)?;
        added.insert((rel.clone(), "users".into()), new_users);
        let mut r = rng.fork(12);
        let n = counts[&Target::UserSessions];
        add_user_sessions(&mut db, &mut r, &ctx, &app_did, n)?;
        added.insert((rel.clone(), "user_sessions".into()), n);
        let mut r = rng.fork(13);
        let n = counts[&Target::WebhookAttempts];
        add_webhook_attempts(&mut db, &mut r, &ctx, n)?;
        added.insert((rel.clone(), "webhook_attempts".into()), n);
        let mut r = rng.fork(14);
        let n = counts[&Target::AppAuditLogs];
        add_audit_logs(&mut db, &mut r, &ctx, &app_did, n, 32)?;
        added.insert((rel.clone(), "audit_logs".into()), n);
        close(db, &path)?;
    }

    Ok(added)
}

fn config_did(config: &Path) -> Result<String> {
    let text = fs::read_to_string(config).with_context(|| format!("read {}", config.display()))?;
    // `node:` is the first mapping; its `did:` is the first one indented by two spaces.
    text.lines()
        .find_map(|l| l.strip_prefix("  did: "))
        .map(|s| s.trim().trim_matches('\'').to_string())
        .context("no node.did in config.yml")
}

fn all_app_dids(data_dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(data_dir.join("data"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("blocklet.db").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

fn first_app_dir(data_dir: &Path) -> Result<PathBuf> {
    let did = all_app_dids(data_dir)?.into_iter().next().context("the fixture has no data/<app>/blocklet.db")?;
    Ok(data_dir.join("data").join(did))
}

fn open(path: &Path) -> Result<Connection> {
    let db = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "{} is in {mode} mode, expected wal", path.display());
    db.execute_batch("PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON;")?;
    Ok(db)
}

/// Checks the foreign keys and closes (which checkpoints the WAL; the file stays in WAL mode).
fn close(db: Connection, path: &Path) -> Result<()> {
    let bad: i64 = db.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
    ensure!(bad == 0, "{}: {bad} foreign-key violations after generating", path.display());
    db.close().map_err(|(_, e)| e)?;
    Ok(())
}

fn existing(db: &Connection, sql: &str) -> Result<Vec<String>> {
    let mut st = db.prepare(sql)?;
    let v = st.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(v)
}

struct Ctx {
    server_did: String,
    app_dids: Vec<String>,
    users: Vec<String>,
    passports: Vec<String>,
}

impl Ctx {
    fn user(&self, r: &mut Rng) -> &str {
        &self.users[r.below(self.users.len() as u64) as usize]
    }
    fn app(&self, r: &mut Rng) -> &str {
        &self.app_dids[r.below(self.app_dids.len() as u64) as usize]
    }
}

/// Timestamp (ms) of row `i` of `n`: in order over the span, with jitter.
fn when(r: &mut Rng, i: u64, n: u64) -> i64 {
    let step = SPAN_MS / n.max(1) as i64;
    end_ms() - SPAN_MS + step * i as i64 + r.below(step.max(1) as u64) as i64
}

/// Runs `each` for `n` rows in transactions of [`TX_ROWS`].
fn in_transactions(
    db: &mut Connection,
    n: u64,
    sql: &str,
    mut each: impl FnMut(&mut rusqlite::Statement<'_>, u64) -> Result<()>,
) -> Result<()> {
    let mut i = 0;
    while i < n {
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare(sql)?;
            let end = (i + TX_ROWS as u64).min(n);
            while i < end {
                each(&mut st, i)?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

const FIRST: [&str; 12] =
    ["Alice", "Bob", "Carol", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jun", "Kemal", "李娜"];
const LAST: [&str; 10] = ["Chen", "Smith", "Garcia", "Müller", "Okafor", "Tanaka", "Novak", "Silva", "Kim", "王"];
const ROLES: [&str; 4] = ["guest", "member", "admin", "owner"];
const UAS: [&str; 6] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "ArcWallet/5.6.1 (iPhone; iOS 17.5; Scale/3.00)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
];
const BROWSERS: [(&str, &str, &str, &str); 5] = [
    ("Chrome", "131.0.0.0", "Mac OS", "10.15.7"),
    ("Edge", "130.0.0.0", "Windows", "10"),
    ("Mobile Safari", "17.5", "iOS", "17.5"),
    ("Firefox", "132.0", "Linux", "x86_64"),
    ("ArcWallet", "5.6.1", "iOS", "17.5"),
];

fn add_users(db: &mut Connection, r: &mut Rng, ctx: &mut Ctx, n: u64, with_passports: bool) -> Result<(u64, u64)> {
    let mut new = Vec::new();
    {
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT INTO users (did, pk, fullName, email, avatar, role, remark, sourceProvider, locale, \
                 approved, extra, firstLoginAt, lastLoginAt, lastLoginIp, createdAt, updatedAt, sourceAppPid, \
                 didSpace, url, phone, inviter, generation, emailVerified, phoneVerified, passkeyCount, \
                 metadata, address, name, createdByAppPid) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            )?;
            for i in 0..n {
                let did = r.did("z1");
                let full = format!("{} {}", r.pick(&FIRST), r.pick(&LAST));
                let email = format!("user{}.{}@example.com", i, r.hex(4));
                let created = when(r, i, n);
                let last = created + r.below(30 * 86_400_000) as i64;
                let provider = r.pick(&["wallet", "wallet", "email", "google", "github"]);
                let extra = if r.chance(30) {
                    format!(
                        r#"{{"note":"imported","nested":{{"a":[{},{},{}]}},"tags":["{}"]}}"#,
                        r.below(10),
                        r.below(10),
                        r.below(10),
                        r.pick(&["beta", "staff", "vip"])
                    )
                } else {
                    "{}".to_string()
                };
                let did_space = r.chance(20).then(|| {
                    format!(
                        r#"{{"endpoint":"https://spaces.example.com/app/api/space/{}/app/{}/object/","did":"{}"}}"#,
                        r.uuid_v4(),
                        ctx.server_did,
                        r.did("zNK")
                    )
                });
                let app = ctx.app(r).to_string();
                let role = r.pick(&ROLES[..3]).to_string();
                tx_exec(
                    &mut st,
                    params![
                        did,
                        format!("0x{}", r.hex(64)),
                        full,
                        email,
                        format!("/.well-known/service/user/avatar/{did}.png"),
                        role,
                        "",
                        provider,
                        r.pick(&["en", "en", "zh", "ja"]),
                        1,
                        extra,
                        sequelize_timestamp(created),
                        sequelize_timestamp(last),
                        r.ipv4(),
                        sequelize_timestamp(created),
                        sequelize_timestamp(last),
                        Option::<String>::None,
                        did_space,
                        "",
                        Option::<String>::None,
                        Option::<String>::None,
                        0,
                        r.below(2) as i64,
                        0,
                        r.below(3) as i64,
                        "{}",
                        "{}",
                        Option::<String>::None,
                        app,
                    ],
                )?;
                new.push((did, created, role));
            }
        }
        tx.commit()?;
    }
    let mut passports = 0;
    if with_passports {
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT INTO passports (id, userDid, type, issuer, specVersion, name, title, endpoint, status, \
                 role, firstLoginAt, lastLoginAt, lastLoginIp, issuanceDate, expirationDate, scope, display, \
                 parentDid, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            )?;
            let issuer = format!(r#"{{"id":"{}","name":"server","pk":"0x{}"}}"#, ctx.server_did, r.hex(66));
            for (did, created, role) in &new {
                let id = r.hex(32);
                let title = match role.as_str() {
                    "admin" => "Admin",
                    "member" => "Member",
                    _ => "Guest",
                };
                tx_exec(
                    &mut st,
                    params![
                        id,
                        did,
                        r#"["NFTPassport","VerifiableCredential"]"#,
                        issuer,
                        "1.0.0",
                        role,
                        title,
                        "https://example.com",
                        r.pick(&["valid", "valid", "valid", "revoked"]),
                        role,
                        Option::<String>::None,
                        sequelize_timestamp(*created + 60_000),
                        r.ipv4(),
                        sequelize_timestamp(*created),
                        Option::<String>::None,
                        "passport",
                        Option::<String>::None,
                        Option::<String>::None,
                        r.pick(&["issue", "invite", "trusted"]),
                    ],
                )?;
                ctx.passports.push(id);
                passports += 1;
            }
        }
        tx.commit()?;
    }
    ctx.users.extend(new.into_iter().map(|(d, _, _)| d));
    Ok((n, passports))
}

fn tx_exec(st: &mut rusqlite::Statement<'_>, p: &[&dyn rusqlite::ToSql]) -> Result<()> {
    st.execute(p)?;
    Ok(())
}

/// (action, category, content template); `{u}` is a user's name, `{x}` a detail.
const AUDIT: [(&str, &str, &str); 10] = [
    ("login", "team", "**{u}** logged in with {x}"),
    ("updateUser", "team", "**{u}** updated the profile of {x}"),
    ("issuePassport", "team", "**{u}** issued passport **{x}**"),
    ("revokePassport", "team", "**{u}** revoked passport **{x}**"),
    ("startBlocklet", "blocklet", "**{u}** started blocklet {x}"),
    ("stopBlocklet", "blocklet", "**{u}** stopped blocklet {x}"),
    ("upgradeComponent", "blocklet", "**{u}** upgraded component {x}"),
    ("configBlocklet", "blocklet", "**{u}** updated the environment of {x}"),
    ("addDomainAlias", "security", "**{u}** added domain alias {x}"),
    ("createAccessKey", "security", "**{u}** created access key {x}"),
];

fn add_audit_logs(db: &mut Connection, r: &mut Rng, ctx: &Ctx, scope: &str, n: u64, ip_limit: usize) -> Result<()> {
    let sql = "INSERT INTO audit_logs (id, scope, action, category, content, actor, extra, env, ip, ua, \
               createdAt, updatedAt, componentDid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)";
    in_transactions(db, n, sql, |st, i| {
        let (action, category, template) = AUDIT[r.below(AUDIT.len() as u64) as usize];
        let user = ctx.user(r).to_string();
        let name = format!("{} {}", r.pick(&FIRST), r.pick(&LAST));
        let detail = format!("{}@{}.{}.{}", r.did("zNK"), r.below(3), r.below(20), r.below(40));
        let content = template.replace("{u}", &name).replace("{x}", &detail);
        let actor = format!(
            r#"{{"did":"{user}","role":"{}","fullName":"{name}","source":"{}"}}"#,
            r.pick(&ROLES),
            r.pick(&["wallet", "email", "sdk"])
        );
        let extra = match r.below(3) {
            0 => "{}".to_string(),
            1 => format!(
                r#"{{"blocklet":{{"did":"{}","name":"app-{}","version":"1.{}.{}"}},"changes":{{"before":"{}","after":"{}"}}}}"#,
                ctx.app(r),
                r.below(50),
                r.below(20),
                r.below(100),
                r.pick(&ROLES),
                r.pick(&ROLES)
            ),
            _ => format!(
                r#"{{"passport":{{"id":"{}","role":"{}"}},"expireAt":null,"notify":{}}}"#,
                r.hex(32),
                r.pick(&ROLES),
                r.chance(50)
            ),
        };
        let (b, bv, os, osv) = BROWSERS[r.below(BROWSERS.len() as u64) as usize];
        let env =
            format!(r#"{{"browser":{{"name":"{b}","version":"{bv}"}},"os":{{"name":"{os}","version":"{osv}"}}}}"#);
        let mut ip = r.ipv4();
        ip.truncate(ip_limit);
        let t = when(r, i, n);
        let ts = sequelize_timestamp(t);
        let component = r.chance(40).then(|| r.did("zNK"));
        st.execute(params![
            r.uuid_v4(),
            scope,
            action,
            category,
            content,
            actor,
            extra,
            env,
            ip,
            r.pick(&UAS),
            ts,
            ts,
            component,
        ])?;
        Ok(())
    })
}

fn add_notifications(db: &mut Connection, r: &mut Rng, ctx: &Ctx, n: u64) -> Result<()> {
    const TITLES: [(&str, &str); 5] = [
        ("Blocklet started", "Blocklet {x} was started successfully"),
        ("Blocklet upgrade available", "A new version of {x} is available"),
        ("Backup finished", "The backup of {x} to DID Spaces finished"),
        ("Login from a new device", "Your account signed in to {x} from a new device"),
        ("Certificate renewed", "The certificate of {x} was renewed"),
    ];
    let sql = "INSERT INTO notifications (id, sender, receiver, title, description, action, entityType, \
               entityId, severity, read, createdAt, attachments, blocks, actions, componentDid, source, type, \
               data, feedType, activity, options) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    in_transactions(db, n, sql, |st, i| {
        let app = ctx.app(r).to_string();
        let (title, desc) = TITLES[r.below(TITLES.len() as u64) as usize];
        let attachments = r.chance(30).then(|| {
            format!(
                r#"[{{"type":"asset","data":{{"did":"{}","chainHost":"https://beta.abtnetwork.io/api/"}}}}]"#,
                r.did("z1")
            )
        });
        let actions = r.chance(60).then(|| {
            format!(
                r#"[{{"name":"view","title":"View details","link":"https://example.com/blocklets/{app}/overview"}}]"#
            )
        });
        let data = r.chance(20).then(|| format!(r#"{{"appId":"{app}","count":{}}}"#, r.below(100)));
        let activity = r.chance(10).then(|| {
            format!(
                r#"{{"type":"comment","actor":"{}","target":{{"type":"post","id":"{}"}}}}"#,
                ctx.user(r),
                r.uuid_v4()
            )
        });
        st.execute(params![
            r.uuid_v4(),
            if r.chance(50) { ctx.server_did.as_str() } else { app.as_str() },
            ctx.user(r),
            title,
            desc.replace("{x}", &app),
            r.chance(50).then(|| format!("/blocklets/{app}/overview")),
            r.pick(&["blocklet", "server"]),
            app,
            r.pick(&["info", "info", "success", "error", "warning"]),
            r.below(2) as i64,
            sequelize_timestamp(when(r, i, n)),
            attachments,
            Option::<String>::None,
            actions,
            r.chance(30).then(|| r.did("zNK")),
            r.pick(&["system", "system", "component"]),
            r.pick(&["notification", "notification", "notification", "connect", "feed"]),
            data,
            r.chance(10).then(|| r.pick(&["graphic", "data_tracker"]).to_string()),
            activity,
            r.chance(20).then(|| r#"{"keepForever":false}"#.to_string()),
        ])?;
        Ok(())
    })
}

fn add_passport_logs(db: &mut Connection, r: &mut Rng, ctx: &Ctx, n: u64) -> Result<()> {
    const ACTIONS: [&str; 7] = ["issue", "revoke", "approve", "recover", "login", "expired", "used"];
    let sql = "INSERT INTO passport_logs (passportId, action, operatorIp, operatorUa, operatorDid, metadata, \
               createdAt) VALUES (?,?,?,?,?,?,?)";
    in_transactions(db, n, sql, |st, i| {
        let passport = &ctx.passports[r.below(ctx.passports.len() as u64) as usize];
        let metadata = r.chance(70).then(|| {
            format!(
                r#"{{"reason":"{}","by":{{"did":"{}","role":"{}"}},"ttl":{}}}"#,
                r.pick(&["invite accepted", "manual", "expired", "login"]),
                ctx.user(r),
                r.pick(&ROLES),
                r.below(86_400)
            )
        });
        st.execute(params![
            passport,
            r.pick(&ACTIONS),
            r.ipv4(),
            r.pick(&UAS),
            ctx.user(r),
            metadata,
            sequelize_timestamp(when(r, i, n)),
        ])?;
        Ok(())
    })
}

fn add_traffic_insights(db: &mut Connection, r: &mut Rng, ctx: &Ctx, n: u64) -> Result<()> {
    // (did, date) is unique: spread the rows over enough DIDs to stay within ~8 years of dates.
    let dids_needed = n.div_ceil(3000).max(1);
    let mut dids: Vec<String> = ctx.app_dids.clone();
    dids.push(ctx.server_did.clone());
    while (dids.len() as u64) < dids_needed {
        dids.push(r.did("zNK"));
    }
    let d = dids.len() as u64;
    let existing: Vec<(String, String)> = {
        let mut st = db.prepare("SELECT did, date FROM traffic_insights")?;
        st.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<rusqlite::Result<_>>()?
    };
    ensure!(existing.is_empty(), "traffic_insights already has rows; the generator assumes it is empty");
    let sql = "INSERT INTO traffic_insights (id, did, date, totalRequests, validRequests, failedRequests, \
               generationTime, uniqueVisitors, uniqueFiles, excludedHits, uniqueReferrers, uniqueNotFound, \
               uniqueStaticFiles, logSize, bandwidth, createdAt, updatedAt) \
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    in_transactions(db, n, sql, |st, i| {
        let day_ms = end_ms() - (i / d) as i64 * 86_400_000;
        let total = r.range(100, 2_000_000);
        let failed = r.range(0, total / 20);
        let ts = sequelize_timestamp(day_ms + 3_600_000 + r.below(3_600_000) as i64);
        st.execute(params![
            r.uuid_v4(),
            dids[(i % d) as usize],
            date_only(day_ms),
            total,
            total - failed,
            failed,
            r.range(0, 5000),
            r.range(1, total / 10 + 1),
            r.range(0, 5000),
            r.range(0, total / 50 + 1),
            r.range(0, 300),
            r.range(0, 1000),
            r.range(0, 3000),
            r.range(10_000, 500_000_000),
            r.range(1_000_000, 50_000_000_000),
            ts,
            ts,
        ])?;
        Ok(())
    })
}

fn add_user_sessions(db: &mut Connection, r: &mut Rng, ctx: &Ctx, app_did: &str, n: u64) -> Result<()> {
    let sql = "INSERT INTO user_sessions (id, visitorId, appPid, userDid, ua, passportId, status, lastLoginIp, \
               extra, createdAt, updatedAt, createdByAppPid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)";
    in_transactions(db, n, sql, |st, i| {
        let created = when(r, i, n);
        let updated = created + r.below(7 * 86_400_000) as i64;
        let (_, _, os, osv) = BROWSERS[r.below(BROWSERS.len() as u64) as usize];
        let extra = r.chance(80).then(|| {
            format!(
                r#"{{"walletOS":"{}","device":{{"os":"{os}","version":"{osv}","id":"{}"}},"lastActiveAt":{}}}"#,
                r.pick(&["ios", "android", "web"]),
                r.hex(16),
                updated
            )
        });
        st.execute(params![
            r.uuid_v4(),
            r.uuid_v4(),
            app_did,
            ctx.user(r),
            r.pick(&UAS),
            r.chance(50).then(|| r.hex(32)),
            r.pick(&["online", "online", "offline", "expired"]),
            r.ipv4(),
            extra,
            sequelize_timestamp(created),
            sequelize_timestamp(updated),
            Option::<String>::None,
        ])?;
        Ok(())
    })
}

fn add_webhook_attempts(db: &mut Connection, r: &mut Rng, ctx: &Ctx, n: u64) -> Result<()> {
    let webhooks: Vec<String> = (0..8).map(|_| r.uuid_v4()).collect();
    let sql = "INSERT INTO webhook_attempts (id, eventId, webhookId, status, responseStatus, responseBody, \
               retryCount, createdAt, updatedAt, triggeredBy, triggeredFrom) VALUES (?,?,?,?,?,?,?,?,?,?,?)";
    in_transactions(db, n, sql, |st, i| {
        let ok = r.chance(85);
        let status = if ok { 200 } else { *r.pick(&[&400, &404, &500, &502, &504]) };
        let body = if ok {
            format!(r#"{{"ok":true,"received":"{}"}}"#, r.uuid_v4())
        } else {
            format!(
                r#"{{"error":{{"code":{status},"message":"{}"}},"retryAfter":{}}}"#,
                r.pick(&["upstream timed out", "not found", "bad gateway", "invalid signature"]),
                r.below(600)
            )
        };
        let created = when(r, i, n);
        st.execute(params![
            r.uuid_v4(),
            r.uuid_v4(),
            webhooks[r.below(webhooks.len() as u64) as usize],
            if ok { "succeeded" } else { "failed" },
            status,
            body,
            if ok { 0 } else { r.range(1, 5) },
            sequelize_timestamp(created),
            sequelize_timestamp(created + r.below(60_000) as i64),
            r.chance(30).then(|| ctx.user(r).to_string()),
            r.chance(30).then(|| "system".to_string()),
        ])?;
        Ok(())
    })
}
