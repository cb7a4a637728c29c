//! The whole product flow offline: a simulated Microsoft 365 tenant on 127.0.0.1, a new
//! connection (the simulated admin signs in and consents), the linked account listed, a
//! full import of users, groups and memberships, changes in the directory, and a delta
//! sync showing exactly what changed. No account, no network, no set-up:
//!
//! ```text
//! cargo run --example demo
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use connection_store::{ConnectionId, ConnectionStore, OwnerId};
use graph_client::ObjectId;
use graph_client::sync::{
    Change, DirectorySink, NoProgress, SinkError, SyncKind, SyncLinks, SyncReport, SyncSummary,
    async_trait,
};
use m365_link_app::connect::{SignIn, create_connection, simulated_browser};
use m365_link_app::glue::Linked;
use m365_link_app::mirror::{ExportFormat, ExportOptions, Mirror, MirrorSink, export};
use m365_link_app::present::connections_table;
use m365_link_app::sync;
use tenant_sim::{Deletion, GroupFields, TenantSim, UserFields};

/// Run the m365-link flow against a simulated tenant: connect, list, full sync, change
/// the directory, delta sync.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 3000)]
    users: usize,
    /// Groups in the simulated tenant.
    #[arg(long, default_value_t = 150)]
    groups: usize,
    /// Seed of the simulated directory (same seed, same tenant).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also export the mirror (users, groups, memberships as JSON Lines) into this folder
    /// at the end. The store and its mirror (one database file) live in a temporary folder
    /// removed at the end.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    step("Starting a simulated Microsoft 365 tenant on 127.0.0.1");
    let sim = TenantSim::builder()
        .users(args.users)
        .groups(args.groups)
        .seed(args.seed)
        .start()
        .await
        .context("could not start tenant-sim")?;
    println!(
        "  tenant {} ({}), {} users, {} groups\n  sign-in at {}, Graph at {}",
        sim.tenant_id(),
        sim.tenant_domain(),
        args.users,
        args.groups,
        sim.login_base(),
        sim.graph_base()
    );

    // The service's store of linked accounts with its directory mirror (one SQLite file),
    // and the customer account using it.
    let scratch = std::env::temp_dir().join(format!("m365-link-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).context("could not make a scratch folder")?;
    let result = flow(&args, &sim, &scratch).await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn flow(args: &Args, sim: &TenantSim, scratch: &std::path::Path) -> anyhow::Result<()> {
    let db = scratch.join("m365-link.sqlite");
    let opened = m365_link_app::store::open(&db.to_string_lossy()).await?;
    let store = Arc::clone(&opened.store);
    let owner = OwnerId::new("demo-customer");

    let (sign_in, connection) = connect(sim, store.as_ref(), &owner).await?;

    step("Linked Microsoft 365 accounts");
    println!("{}", connections_table(&store.list(&owner).await?));

    step("Manage → import employees: full sync");
    let linked = Linked::open(Arc::clone(&store), &owner, connection.id, &sign_in.app).await?;
    let options = sync::Options::new()?;
    let target = sync::Target {
        store: Arc::clone(&store),
        owner: owner.clone(),
        id: connection.id,
    };
    let sink = || {
        opened
            .mirror
            .sink(&opened.sql, connection.id)
            .with_fence(options.holder.clone())
    };
    sim.control().reset_counters();
    let report = sync::run(&linked.graph, &target, &mut sink(), &options, &NoProgress).await?;
    print_report(&report, sim.control().counters().total());
    println!("  mirror: {}", opened.description);

    step("Meanwhile, in the tenant: people join, change jobs, leave; groups change");
    for line in change_the_directory(sim)? {
        println!("  {line}");
    }

    step("Delta sync: only what changed");
    sim.control().reset_counters();
    // The mirror's sink, wrapped to say what each change does before it commits.
    let mut narrated = Narrated::new(&opened.mirror, connection.id, sink());
    let report = sync::run(&linked.graph, &target, &mut narrated, &options, &NoProgress).await?;
    let mut lines = narrated.lines;
    lines.sort();
    for (_, line) in lines {
        println!("  {line}");
    }
    print_report(&report, sim.control().counters().total());

    if let Some(out) = &args.out {
        let written = export(
            &opened.mirror,
            connection.id,
            &ExportOptions::new(ExportFormat::JsonLines),
            out,
        )
        .await?;
        println!("  export: {} users into {}", written.users, out.display());
    }

    step("Linked Microsoft 365 accounts");
    println!("{}", connections_table(&store.list(&owner).await?));
    println!(
        "\nNext: `cargo run --example connect -- --help` links a real tenant, \
         `cargo run --example connections -- list` lists them, `sync` imports one and \
         `export` writes its mirror to files."
    );
    Ok(())
}

/// "Create a new connection" → name → "Connect": the simulated admin signs in and
/// consents, and the grant is saved as a connection.
async fn connect(
    sim: &TenantSim,
    store: &dyn ConnectionStore,
    owner: &OwnerId,
) -> anyhow::Result<(SignIn, connection_store::Connection)> {
    step("Create a new connection: \"Contoso (simulated)\" → Connect");
    let sign_in = SignIn::simulated(sim);
    // The simulator consents as its Global Administrator, as the admin would in a browser.
    let (_client, grant) = sign_in
        .browser(None, Duration::from_secs(30), |url| {
            println!(
                "  sign-in URL: {}…",
                &url.as_str()[..url.as_str().len().min(90)]
            );
            simulated_browser(url);
        })
        .await
        .context("the simulated sign-in failed")?;
    let connection = create_connection(
        store,
        owner,
        "Contoso (simulated)",
        sign_in.cloud.clone(),
        &grant,
    )
    .await?;
    println!(
        "  signed in as {} and consented to {}",
        connection.admin.username,
        connection.scopes.join(" ")
    );

    Ok((sign_in, connection))
}

fn step(title: &str) {
    println!("\n▶ {title}");
}

/// What the demo changes through the simulator's control API, described.
fn change_the_directory(sim: &TenantSim) -> anyhow::Result<Vec<String>> {
    let control = sim.control();
    let mut done = Vec::new();
    for name in ["Nina Neumann", "Omar Haddad", "Priya Raman"] {
        let user = control.add_user(&UserFields::new().display_name(name).job_title("Engineer"))?;
        done.push(format!("joined: {}", user.user_principal_name));
    }
    let people: Vec<_> = control
        .users()
        .into_iter()
        .filter(|u| !u.is_admin)
        .collect();
    let take = |index: usize| {
        people
            .get(index)
            .context("the tenant is too small for the demo")
    };
    for index in [10, 11] {
        let user = take(index)?;
        control.update_user(&user.id, &UserFields::new().job_title("Head of Sales"))?;
        done.push(format!("new job title: {}", user.user_principal_name));
    }
    let leaver = take(20)?;
    control.delete_user(&leaver.id, Deletion::Soft)?;
    done.push(format!(
        "deleted (restorable): {}",
        leaver.user_principal_name
    ));
    let gone = take(21)?;
    control.delete_user(&gone.id, Deletion::Permanent)?;
    done.push(format!("deleted permanently: {}", gone.user_principal_name));

    let team = control.add_group(
        GroupFields::new()
            .display_name("Signature Rollout")
            .description("Created during the demo"),
    )?;
    for index in [30, 31, 32] {
        control.add_member(&team.id, &take(index)?.id)?;
    }
    done.push(format!("new group {:?} with 3 members", team.display_name));
    let group = control
        .groups()
        .into_iter()
        .find(|g| g.member_count > 3 && g.member_count < 100)
        .context("the tenant has no small group")?;
    let members = control.group_member_ids(&group.id)?;
    if let Some(member) = members.first() {
        control.remove_member(&group.id, member)?;
        done.push(format!("removed a member from {:?}", group.display_name));
    }
    let newcomer = take(40)?;
    if !members.contains(&newcomer.id) {
        control.add_member(&group.id, &newcomer.id)?;
        done.push(format!(
            "added {} to {:?}",
            newcomer.user_principal_name, group.display_name
        ));
    }
    Ok(done)
}

/// What one sync reported, and the Graph requests the simulator counted.
fn print_report(report: &SyncReport, requests: u64) {
    println!(
        "  {} sync in {:.1?} with {requests} Graph requests",
        report.kind, report.elapsed
    );
    println!("{}", report_table(&report.summary));
}

fn report_table(summary: &SyncSummary) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["", "total", "added", "updated", "removed"]);
    for (name, counts) in [
        ("users", summary.users),
        ("groups", summary.groups),
        ("memberships", summary.memberships),
    ] {
        table.add_row([
            name.to_owned(),
            counts.total.to_string(),
            counts.added.to_string(),
            counts.updated.to_string(),
            counts.removed.to_string(),
        ]);
    }
    table
}

/// A [`DirectorySink`] that forwards to the mirror's and, for each change of a delta
/// round, writes what it does in words, looking up the names the mirror still holds
/// before the commit. (A service writes its own sink the same way: over its database.)
struct Narrated<'a> {
    mirror: &'a Mirror,
    connection: ConnectionId,
    inner: MirrorSink,
    /// Sign-in names of the users this round brought, for members not yet committed.
    names: BTreeMap<ObjectId, String>,
    /// (order, line): updates, additions, removals, then groups and members.
    lines: Vec<((u8, String), String)>,
}

impl<'a> Narrated<'a> {
    fn new(mirror: &'a Mirror, connection: ConnectionId, inner: MirrorSink) -> Self {
        Self {
            mirror,
            connection,
            inner,
            names: BTreeMap::new(),
            lines: Vec::new(),
        }
    }

    async fn user_name(&self, id: &ObjectId) -> Result<String, SinkError> {
        if let Some(name) = self.names.get(id) {
            return Ok(name.clone());
        }
        let user = self
            .mirror
            .user(self.connection, id)
            .await
            .map_err(sink_error)?;
        Ok(user
            .and_then(|u| u.user_principal_name)
            .unwrap_or_else(|| id.to_string()))
    }

    async fn group_name(&self, id: &ObjectId) -> Result<String, SinkError> {
        let group = self
            .mirror
            .group(self.connection, id)
            .await
            .map_err(sink_error)?;
        Ok(group
            .and_then(|g| g.display_name)
            .unwrap_or_else(|| id.to_string()))
    }

    async fn narrate(&mut self, change: &Change) -> Result<(), SinkError> {
        let line = match change {
            Change::UserUpserted(user) => {
                let Some(id) = &user.id else { return Ok(()) };
                let upn = user
                    .user_principal_name
                    .clone()
                    .unwrap_or_else(|| id.to_string());
                self.names.insert(id.clone(), upn.clone());
                match self
                    .mirror
                    .user(self.connection, id)
                    .await
                    .map_err(sink_error)?
                {
                    None => ((1, upn.clone()), format!("+ user {upn}")),
                    Some(old) => {
                        let changed = changed_fields(&old, user);
                        if changed.is_empty() {
                            return Ok(());
                        }
                        (
                            (0, upn.clone()),
                            format!("~ user {upn}: {}", changed.join(", ")),
                        )
                    }
                }
            }
            Change::UserRemoved { id, .. } => {
                let upn = self.user_name(id).await?;
                ((2, upn.clone()), format!("- user {upn}"))
            }
            Change::GroupUpserted(group) => {
                let Some(id) = &group.id else { return Ok(()) };
                if self
                    .mirror
                    .group(self.connection, id)
                    .await
                    .map_err(sink_error)?
                    .is_some()
                {
                    return Ok(());
                }
                let name = group.display_name.clone().unwrap_or_else(|| id.to_string());
                ((3, name.clone()), format!("+ group {name:?}"))
            }
            Change::GroupRemoved { id, .. } => {
                let name = self.group_name(id).await?;
                ((3, name.clone()), format!("- group {name:?}"))
            }
            Change::MemberAdded { group, member, .. } => {
                let (group, member) =
                    (self.group_name(group).await?, self.user_name(member).await?);
                (
                    (4, group.clone()),
                    format!("+ member {member} of {group:?}"),
                )
            }
            Change::MemberRemoved { group, member } => {
                let (group, member) =
                    (self.group_name(group).await?, self.user_name(member).await?);
                (
                    (4, group.clone()),
                    format!("- member {member} of {group:?}"),
                )
            }
            _ => return Ok(()),
        };
        self.lines.push(line);
        Ok(())
    }
}

fn sink_error(error: m365_link_app::mirror::MirrorError) -> SinkError {
    SinkError::new(
        graph_client::sync::SinkErrorKind::Unavailable,
        "could not read the mirror",
    )
    .with_source(error)
}

/// `field old → new` for each property that differs, as JSON.
fn changed_fields(old: &graph_client::User, new: &graph_client::User) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    new.iter()
        .filter(|(key, value)| !value.is_null() && old.get(*key) != Some(*value))
        .map(|(key, value)| {
            let was = old
                .get(key)
                .filter(|v| !v.is_null())
                .map_or_else(|| "–".to_owned(), ToString::to_string);
            format!("{key} {was} → {value}")
        })
        .collect()
}

#[async_trait]
impl DirectorySink for Narrated<'_> {
    async fn links(&mut self) -> Result<Option<SyncLinks>, SinkError> {
        self.inner.links().await
    }

    async fn begin(&mut self, kind: SyncKind) -> Result<(), SinkError> {
        self.lines.clear();
        self.names.clear();
        self.inner.begin(kind).await
    }

    async fn apply(&mut self, changes: &[Change]) -> Result<(), SinkError> {
        for change in changes {
            self.narrate(change).await?;
        }
        self.inner.apply(changes).await
    }

    async fn commit(&mut self, links: SyncLinks) -> Result<SyncSummary, SinkError> {
        self.inner.commit(links).await
    }
}
