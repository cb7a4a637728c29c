//! The whole product flow offline: a simulated Microsoft 365 tenant on 127.0.0.1, a new
//! connection (the simulated admin signs in and consents), the linked account listed, a
//! full import of users, groups and memberships, changes in the directory, and a delta
//! sync showing exactly what changed. No account, no network, no set-up:
//!
//! ```text
//! cargo run --example demo
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use common::connect::{SignIn, create_connection, simulated_browser};
use common::glue::{App, Linked};
use common::present::connections_table;
use connection_store::{ConnectionStore, CursorKey, MemoryStore, OwnerId, SecretString};
use futures::TryStreamExt as _;
use graph_client::{DeltaEvent, DeltaLink, GraphClient, RemovedReason};
use tenant_sim::{Deletion, GroupFields, TenantSim, UserFields};

/// Run the m365-link flow against a simulated tenant: connect, list, full sync, change
/// the directory, delta sync.
#[derive(Parser, Debug)]
#[command(version, about)]
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

    // The service's store of linked accounts, and the customer account using it.
    let store: Arc<dyn ConnectionStore> = Arc::new(MemoryStore::new());
    let owner = OwnerId::new("demo-customer");

    let (sign_in, connection) = connect(&sim, store.as_ref(), &owner).await?;

    step("Linked Microsoft 365 accounts");
    println!("{}", connections_table(&store.list(&owner).await?));

    step("Manage → import employees: full sync");
    let linked = Linked::open(Arc::clone(&store), &owner, connection.id, &sign_in.app).await?;
    let mut directory = Directory::default();
    sim.control().reset_counters();
    let started = Instant::now();
    let links = directory.sync(&linked.graph, None).await?;
    save_links(store.as_ref(), &owner, connection.id, &links).await?;
    store
        .record_sync(&owner, connection.id, time::OffsetDateTime::now_utc())
        .await?;
    println!(
        "  {} users, {} groups, {} memberships in {:.1?} with {} Graph requests",
        directory.users.len(),
        directory.groups.len(),
        directory.membership_count(),
        started.elapsed(),
        sim.control().counters().total()
    );

    step("Meanwhile, in the tenant: people join, change jobs, leave; groups change");
    let changes = change_the_directory(&sim)?;
    for line in &changes {
        println!("  {line}");
    }

    step("Delta sync: only what changed");
    sim.control().reset_counters();
    let started = Instant::now();
    let saved = load_links(store.as_ref(), &owner, connection.id).await?;
    let before = directory.clone();
    let links = directory.sync(&linked.graph, Some(saved)).await?;
    save_links(store.as_ref(), &owner, connection.id, &links).await?;
    store
        .record_sync(&owner, connection.id, time::OffsetDateTime::now_utc())
        .await?;
    let requests = sim.control().counters().total();
    for line in before.diff(&directory) {
        println!("  {line}");
    }
    println!(
        "  done in {:.1?} with {requests} Graph requests; now {} users, {} groups, {} memberships",
        started.elapsed(),
        directory.users.len(),
        directory.groups.len(),
        directory.membership_count(),
    );

    step("Linked Microsoft 365 accounts");
    println!("{}", connections_table(&store.list(&owner).await?));
    println!(
        "\nNext: `cargo run --example connect -- --help` links a real tenant, \
         `cargo run --example connections -- list` lists them."
    );
    sim.shutdown().await;
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
    let sign_in = SignIn {
        app: App {
            client_id: sim.client_id().to_owned(),
            client_secret: Some(sim.client_secret().clone()),
        },
        cloud: connection_store::Cloud::Custom {
            login: sim.login_base().to_owned(),
            graph: sim.graph_base().to_owned(),
        },
        authority: "organizations".to_owned(),
    };
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

/// The imported directory: users by id, groups by id with their member ids.
#[derive(Clone, Default)]
struct Directory {
    users: HashMap<String, UserRow>,
    groups: HashMap<String, GroupRow>,
    /// Why users were removed in the last sync (soft or permanent deletion).
    removed: HashMap<String, RemovedReason>,
}

#[derive(Clone, PartialEq, Eq)]
struct UserRow {
    upn: String,
    display_name: String,
    job_title: String,
}

#[derive(Clone, Default)]
struct GroupRow {
    display_name: String,
    members: BTreeSet<String>,
}

/// The delta links of the users and groups rounds, saved as the connection's cursors.
struct Links {
    users: DeltaLink,
    groups: DeltaLink,
}

impl Directory {
    /// One sync: a full round without links, or the changes since `links`. Upserts
    /// overwrite and removals of unknown ids are no-ops (spec 9: changes may repeat).
    async fn sync(&mut self, graph: &GraphClient, links: Option<Links>) -> anyhow::Result<Links> {
        // A delta link carries its round's $select, so only a first round names one.
        let (users, groups) = match links {
            None => (
                graph
                    .users()
                    .delta()
                    .select(["displayName", "userPrincipalName", "jobTitle"]),
                graph.groups().delta().select(["displayName", "members"]),
            ),
            Some(links) => (
                graph.users().delta_from(links.users),
                graph.groups().delta_from(links.groups),
            ),
        };
        self.removed.clear();
        let mut users_link = None;
        let stream = users.stream();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.try_next().await? {
            match event {
                DeltaEvent::Upsert(user) => {
                    let Some(id) = user.id else { continue };
                    let row = self
                        .users
                        .entry(id.into_string())
                        .or_insert_with(|| UserRow {
                            upn: String::new(),
                            display_name: String::new(),
                            job_title: String::new(),
                        });
                    // A delta update carries the changed properties; keep the others.
                    if let Some(upn) = user.user_principal_name {
                        row.upn = upn;
                    }
                    if let Some(name) = user.display_name {
                        row.display_name = name;
                    }
                    if let Some(title) = user.job_title {
                        row.job_title = title;
                    }
                }
                DeltaEvent::Removed { id, reason } => {
                    self.users.remove(id.as_str());
                    self.removed.insert(id.as_str().to_owned(), reason);
                    for group in self.groups.values_mut() {
                        group.members.remove(id.as_str());
                    }
                }
                DeltaEvent::Complete(link) => users_link = Some(link),
                _ => {}
            }
        }
        let mut groups_link = None;
        let stream = groups.stream();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.try_next().await? {
            match event {
                DeltaEvent::Upsert(group) => {
                    let Some(id) = group.id else { continue };
                    let row = self.groups.entry(id.into_string()).or_default();
                    if let Some(name) = group.display_name {
                        row.display_name = name;
                    }
                    for change in group.members_delta {
                        if change.is_removed() {
                            row.members.remove(change.id.as_str());
                        } else {
                            row.members.insert(change.id.into_string());
                        }
                    }
                }
                DeltaEvent::Removed { id, reason } => {
                    if matches!(reason, RemovedReason::Deleted | RemovedReason::Changed) {
                        self.groups.remove(id.as_str());
                    }
                }
                DeltaEvent::Complete(link) => groups_link = Some(link),
                _ => {}
            }
        }
        Ok(Links {
            users: users_link.context("the users delta round ended without a delta link")?,
            groups: groups_link.context("the groups delta round ended without a delta link")?,
        })
    }

    fn membership_count(&self) -> usize {
        self.groups.values().map(|g| g.members.len()).sum()
    }

    /// What changed from `self` to `after`, one line each.
    fn diff(&self, after: &Directory) -> Vec<String> {
        let name = |dir: &Directory, id: &str| {
            dir.users
                .get(id)
                .map_or_else(|| id.to_owned(), |u| u.upn.clone())
        };
        let mut lines = Vec::new();
        // Users in the order of their sign-in names, additions and updates first.
        let mut users: Vec<(&String, &UserRow)> = after.users.iter().collect();
        users.sort_by(|a, b| a.1.upn.cmp(&b.1.upn));
        for (id, user) in users {
            match self.users.get(id) {
                None => lines.push(format!("+ user {} ({})", user.upn, user.display_name)),
                Some(old) if old != user => lines.push(format!(
                    "~ user {}: job title {:?} → {:?}",
                    user.upn, old.job_title, user.job_title
                )),
                Some(_) => {}
            }
        }
        let mut removed: Vec<(&String, &UserRow)> = self
            .users
            .iter()
            .filter(|(id, _)| !after.users.contains_key(*id))
            .collect();
        removed.sort_by(|a, b| a.1.upn.cmp(&b.1.upn));
        for (id, user) in removed {
            let how = match after.removed.get(id) {
                Some(RemovedReason::Deleted) => "deleted permanently",
                _ => "deleted, restorable for 30 days",
            };
            lines.push(format!("- user {} ({how})", user.upn));
        }
        let groups: BTreeMap<&String, &GroupRow> = after.groups.iter().collect();
        for (id, group) in groups {
            let old = self.groups.get(id);
            if old.is_none() {
                lines.push(format!("+ group {:?}", group.display_name));
            }
            let empty = BTreeSet::new();
            let old_members = old.map_or(&empty, |g| &g.members);
            for added in group.members.difference(old_members) {
                lines.push(format!(
                    "+ member {} of {:?}",
                    name(after, added),
                    group.display_name
                ));
            }
            for removed in old_members.difference(&group.members) {
                lines.push(format!(
                    "- member {} of {:?}",
                    name(self, removed),
                    group.display_name
                ));
            }
        }
        lines
    }
}

async fn save_links(
    store: &dyn ConnectionStore,
    owner: &OwnerId,
    id: connection_store::ConnectionId,
    links: &Links,
) -> anyhow::Result<()> {
    // Delta links read the tenant's changes: stored like tokens (encrypted in SQL stores).
    store
        .save_cursor(
            owner,
            id,
            &CursorKey::users(),
            SecretString::from(links.users.expose_secret().to_owned()),
        )
        .await?;
    store
        .save_cursor(
            owner,
            id,
            &CursorKey::groups(),
            SecretString::from(links.groups.expose_secret().to_owned()),
        )
        .await?;
    Ok(())
}

async fn load_links(
    store: &dyn ConnectionStore,
    owner: &OwnerId,
    id: connection_store::ConnectionId,
) -> anyhow::Result<Links> {
    use secrecy::ExposeSecret as _;
    let users = store
        .load_cursor(owner, id, &CursorKey::users())
        .await?
        .context("no users cursor saved")?;
    let groups = store
        .load_cursor(owner, id, &CursorKey::groups())
        .await?
        .context("no groups cursor saved")?;
    Ok(Links {
        users: DeltaLink::new(users.expose_secret()),
        groups: DeltaLink::new(groups.expose_secret()),
    })
}
