#![doc = include_str!("../README.md")]
#![doc = include_str!("auth/README-entra.md")]
#![warn(missing_docs)]

pub mod auth;
mod control;
mod data;
mod delta;
mod error;
mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod graph;
mod request_target;
mod roles;
mod server;
mod throttle;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;

pub use auth::{AccessTokenInfo, CaeEvent, ClaimsChallenge, ConsentMode, TokenCounters};
pub use control::{Control, GroupFields, GroupSummary, UserFields, UserSummary};
pub use data::{Deletion, UserType};
pub use error::Error;
pub use faults::{FaultKind, FaultSettings};
pub use roles::DirectoryRole;
pub use server::RequestCounters;
pub use throttle::ThrottleSettings;

use crate::data::{Directory, DirectoryAccounts, GenerateOptions};
use crate::faults::Faults;
use crate::request_target::LenientAcceptor;
use crate::server::{Authority, Shared, TenantState};
use crate::throttle::Throttle;
use axum_server::accept::DefaultAcceptor;

/// Largest tenant the builder accepts (and most users of all tenants together).
const MAX_USERS: usize = 2_000_000;
const MAX_GROUPS: usize = 200_000;
/// Most tenants one simulated cloud serves.
const MAX_TENANTS: usize = 10_000;
/// CAE access tokens "can increase token lifetime up to 28 hours"
/// [E:app-resilience-continuous-access-evaluation.md].
const CAE_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(28 * 60 * 60);

/// Settings of a simulator; [`TenantSim::builder`] makes one, [`TenantSimBuilder::start`]
/// runs it.
#[derive(Debug, Clone)]
#[must_use]
pub struct TenantSimBuilder {
    tenants: usize,
    users: usize,
    groups: usize,
    seed: u64,
    throttle: Option<ThrottleSettings>,
    faults: FaultSettings,
    fault_rate: f64,
    access_token_lifetime: Duration,
    cae_access_token_lifetime: Duration,
    consent_mode: ConsentMode,
    tls: bool,
    tenant_domain: String,
    login_port: u16,
    graph_port: u16,
    delta_page_size: usize,
    wids_claim: bool,
}

impl Default for TenantSimBuilder {
    fn default() -> Self {
        Self {
            tenants: 1,
            users: 50,
            groups: 20,
            seed: 1,
            throttle: None,
            faults: FaultSettings::none(),
            fault_rate: 0.0,
            access_token_lifetime: Duration::from_secs(3600),
            cae_access_token_lifetime: CAE_ACCESS_TOKEN_LIFETIME,
            consent_mode: ConsentMode::AutoConsent,
            tls: false,
            tenant_domain: "contoso.onmicrosoft.com".into(),
            login_port: 0,
            graph_port: 0,
            delta_page_size: 100,
            wids_claim: false,
        }
    }
}

impl TenantSimBuilder {
    /// Number of tenants (directories) the one login host and the one Graph host serve
    /// (default 1). Tenant 0 is the one [`TenantSim::tenant_id`] names, with the domain
    /// of [`TenantSimBuilder::tenant_domain`]; tenant `i > 0` has domain
    /// `tenant{i:04}.onmicrosoft.com` and its own ids and data from the seed and `i`.
    /// [`TenantSimBuilder::users`], [`TenantSimBuilder::groups`], the throttle, faults,
    /// consent mode and token lifetime apply to each tenant on its own.
    pub fn tenants(mut self, tenants: usize) -> Self {
        self.tenants = tenants;
        self
    }

    /// Number of users per tenant (default 50; at least 1, user 0 is the admin).
    pub fn users(mut self, users: usize) -> Self {
        self.users = users;
        self
    }

    /// Number of groups per tenant (default 20): "All Company", one per department, then
    /// teams.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Seed of the generated directory, ids and credentials (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Throttle at `units_per_second` Graph resource units per second with a burst of
    /// the same size (see the README's cost table).
    pub fn rate_limit(mut self, units_per_second: f64) -> Self {
        self.throttle = ThrottleSettings::new(units_per_second, units_per_second.max(1.0)).ok();
        if self.throttle.is_none() {
            // Remembered as invalid so that start() can say so.
            self.fault_rate = f64::NAN;
        }
        self
    }

    /// Throttle with explicit settings.
    pub fn throttle(mut self, settings: ThrottleSettings) -> Self {
        self.throttle = Some(settings);
        self
    }

    /// Fixed latency added to every Graph request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.faults = self.faults.with_latency(latency);
        self
    }

    /// Probability (0..=1) that a Graph request meets a seeded fault.
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = rate;
        self
    }

    /// Fault kinds to draw from (default all).
    pub fn fault_kinds(mut self, kinds: &[FaultKind]) -> Self {
        if let Ok(faults) = self.faults.clone().with_kinds(kinds) {
            self.faults = faults;
        } else {
            self.fault_rate = f64::NAN;
        }
        self
    }

    /// Lifetime of access tokens (default 1 hour).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// Lifetime of CAE access tokens, those issued to requests whose `claims` declare
    /// the `cp1` client capability (default 28 hours, the most Microsoft gives them).
    pub fn cae_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.cae_access_token_lifetime = lifetime;
        self
    }

    /// How `/authorize` answers (default auto-consent).
    pub fn consent_mode(mut self, mode: ConsentMode) -> Self {
        self.consent_mode = mode;
        self
    }

    /// Serve https with a self-signed certificate made at start.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The tenant's primary domain (default `contoso.onmicrosoft.com`).
    pub fn tenant_domain(mut self, domain: impl Into<String>) -> Self {
        self.tenant_domain = domain.into();
        self
    }

    /// Port of the login listener (default 0: any free port).
    pub fn login_port(mut self, port: u16) -> Self {
        self.login_port = port;
        self
    }

    /// Port of the Graph listener (default 0: any free port).
    pub fn graph_port(mut self, port: u16) -> Self {
        self.graph_port = port;
        self
    }

    /// Most entries (objects plus `members@delta` references) on one delta page (default
    /// 100, at least 2); small values make large groups span pages.
    pub fn delta_page_size(mut self, entries: usize) -> Self {
        self.delta_page_size = entries;
        self
    }

    /// Whether id tokens carry `wids`, the template ids of the signed-in user's directory
    /// roles (default off). Entra adds `wids` only when the app manifest's
    /// `groupMembershipClaims` asks for directory roles (`DirectoryRole` or `All`); this
    /// stands for that setting, in every tenant. [`Control::set_wids_claim`] changes it
    /// per tenant while running.
    pub fn wids_claim(mut self, enabled: bool) -> Self {
        self.wids_claim = enabled;
        self
    }

    fn validate(&self) -> Result<FaultSettings, Error> {
        if !(1..=MAX_TENANTS).contains(&self.tenants) {
            return Err(Error::InvalidConfig(format!(
                "tenants must be within 1..={MAX_TENANTS}, got {}",
                self.tenants
            )));
        }
        if self.users.saturating_mul(self.tenants) > MAX_USERS {
            return Err(Error::InvalidConfig(format!(
                "tenants x users must be at most {MAX_USERS}, got {} x {}",
                self.tenants, self.users
            )));
        }
        if !(1..=MAX_USERS).contains(&self.users) {
            return Err(Error::InvalidConfig(format!(
                "users must be within 1..={MAX_USERS}, got {}",
                self.users
            )));
        }
        if self.groups > MAX_GROUPS {
            return Err(Error::InvalidConfig(format!(
                "groups must be at most {MAX_GROUPS}, got {}",
                self.groups
            )));
        }
        if self.delta_page_size < 2 {
            return Err(Error::InvalidConfig(
                "delta page size must be at least 2".into(),
            ));
        }
        if self.access_token_lifetime.is_zero() || self.cae_access_token_lifetime.is_zero() {
            return Err(Error::InvalidConfig(
                "access token lifetimes must be positive".into(),
            ));
        }
        let domain_ok = self.tenant_domain.contains('.')
            && self
                .tenant_domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !domain_ok {
            return Err(Error::InvalidConfig(format!(
                "'{}' is not a domain name",
                self.tenant_domain
            )));
        }
        if self.fault_rate.is_nan() {
            return Err(Error::InvalidConfig(
                "rate limit must be positive and fault kinds non-empty".into(),
            ));
        }
        self.faults.clone().with_rate(self.fault_rate)
    }

    /// Generates the tenant and starts both listeners on 127.0.0.1.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for out-of-range settings, [`Error::Bind`] when a port is
    /// taken, [`Error::Start`] when the signing key or certificate cannot be made.
    pub async fn start(self) -> Result<TenantSim, Error> {
        self.start_with(|auth| auth as Arc<dyn Authority>).await
    }

    /// Starts with the Graph half asking `authority` about bearers and grants (unit
    /// tests put a stand-in in front of the Entra half).
    #[expect(clippy::too_many_lines, reason = "start-up steps in order")]
    pub(crate) async fn start_with(
        self,
        authority: impl FnOnce(Arc<auth::Auth>) -> Arc<dyn Authority>,
    ) -> Result<TenantSim, Error> {
        let faults = self.validate()?;
        let login_listener = bind(self.login_port)?;
        let graph_listener = bind(self.graph_port)?;
        let scheme = if self.tls { "https" } else { "http" };
        let login_base = format!("{scheme}://127.0.0.1:{}", port_of(&login_listener)?);
        let graph_root = format!("{scheme}://127.0.0.1:{}", port_of(&graph_listener)?);

        // Tenant 0 and the app's credentials come from one stream, as they did when the
        // simulator had one tenant: the same seed gives the same tenant 0.
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x7465_6e61_6e74);
        let first_tenant_id = random_uuid(&mut rng);
        let client_id = random_uuid(&mut rng);
        let secret_bytes: [u8; 24] = rng.random();
        let client_secret = format!(
            "sim~{}",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                secret_bytes
            )
        );
        let plans: Vec<TenantPlan> = (0..self.tenants)
            .map(|index| TenantPlan::new(&self, index, &first_tenant_id))
            .collect();
        let (users, groups) = (self.users, self.groups);
        // Generating 100,000 users is CPU work: keep it off the async workers.
        let generated = tokio::task::spawn_blocking(move || generate(plans, users, groups))
            .await
            .map_err(|e| Error::Start(format!("directory generation failed: {e}")))?;

        let config = auth::AuthConfig {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            login_base: login_base.clone(),
            graph_resource: "https://graph.microsoft.com".into(),
            access_token_lifetime: self.access_token_lifetime,
            cae_access_token_lifetime: self.cae_access_token_lifetime,
            consent_mode: self.consent_mode,
        };
        let auth_tenants = generated
            .iter()
            .map(|(plan, dir)| auth::AuthTenant {
                id: plan.id.clone(),
                domain: plan.domain.clone(),
                directory: Arc::new(DirectoryAccounts(Arc::clone(dir))),
            })
            .collect();
        let entra = auth::Auth::new(config, auth_tenants)?;
        for tenant in 0..self.tenants {
            entra.set_wids_claim(tenant, self.wids_claim);
        }
        let login_router = auth::router(Arc::clone(&entra));
        let mut infos = Vec::with_capacity(generated.len());
        let mut tenant_names = HashMap::with_capacity(generated.len() * 2);
        let mut states = Vec::with_capacity(generated.len());
        for (index, (plan, dir)) in generated.into_iter().enumerate() {
            let (admin_id, admin_upn) = {
                let dir = dir.read().unwrap_or_else(PoisonError::into_inner);
                let id = dir.user_ids.first().map(ToString::to_string);
                let upn = dir.user(0).map(|u| u.user_principal_name.to_string());
                (id.unwrap_or_default(), upn.unwrap_or_default())
            };
            tenant_names.insert(plan.id.to_ascii_lowercase(), index);
            tenant_names.insert(plan.domain.to_ascii_lowercase(), index);
            infos.push(TenantInfo {
                id: plan.id.clone(),
                domain: plan.domain.clone(),
                admin_upn,
                admin_id,
            });
            states.push(TenantState {
                index,
                throttle_key: format!("{client_id}/{}", plan.id),
                id: plan.id,
                dir,
                throttle: Mutex::new(Throttle::new(self.throttle)),
                faults: Mutex::new(Faults::new(faults.clone(), plan.seed)),
                counters: Mutex::new(RequestCounters::default()),
            });
        }
        let shared = Arc::new(Shared {
            tenants: states,
            tenant_names,
            auth: authority(Arc::clone(&entra)),
            graph_base: format!("{graph_root}/v1.0"),
            delta_page_size: self.delta_page_size,
        });
        let controls = (0..infos.len())
            .map(|index| Control::new(Arc::clone(&shared), index))
            .collect();
        let graph_router = axum::Router::new()
            .fallback(server::graph_entry)
            .with_state(Arc::clone(&shared))
            .nest("/_sim", control::router(Arc::clone(&shared)));

        let (tls, cert) = if self.tls {
            let (config, certificate) = make_certificate().await?;
            (Some(config), Some(certificate))
        } else {
            (None, None)
        };
        let login_handle = axum_server::Handle::new();
        let graph_handle = axum_server::Handle::new();
        let tasks = vec![
            spawn_server(
                login_listener,
                login_router,
                login_handle.clone(),
                tls.clone(),
            ),
            spawn_server(graph_listener, graph_router, graph_handle.clone(), tls),
        ];
        Ok(TenantSim {
            login_base,
            graph_base: shared.graph_base.clone(),
            control_base: format!("{graph_root}/_sim"),
            tenants: infos,
            client_id,
            client_secret: SecretString::from(client_secret),
            cert,
            controls,
            shared,
            entra,
            handles: vec![login_handle, graph_handle],
            tasks,
        })
    }
}

/// The name, ids and seed of one tenant, fixed before its directory is generated.
struct TenantPlan {
    id: String,
    domain: String,
    seed: u64,
}

impl TenantPlan {
    /// Tenant 0 keeps the builder's seed and domain; tenant `index` gets a seed, an id
    /// and a domain of its own, all from the builder's seed and the index.
    fn new(builder: &TenantSimBuilder, index: usize, first_id: &str) -> Self {
        if index == 0 {
            return Self {
                id: first_id.to_owned(),
                domain: builder.tenant_domain.clone(),
                seed: builder.seed,
            };
        }
        let offset = u64::try_from(index)
            .unwrap_or(u64::MAX)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let seed = builder.seed.wrapping_add(offset);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7465_6e61_6e74);
        Self {
            id: random_uuid(&mut rng),
            domain: format!("tenant{index:04}.onmicrosoft.com"),
            seed,
        }
    }
}

fn random_uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

/// Generates every tenant's directory, on all cores when there are many.
fn generate(
    plans: Vec<TenantPlan>,
    users: usize,
    groups: usize,
) -> Vec<(TenantPlan, Arc<RwLock<Directory>>)> {
    let make = |plan: &TenantPlan| {
        Directory::generate(&GenerateOptions {
            users,
            groups,
            seed: plan.seed,
            tenant_domain: plan.domain.clone(),
        })
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(plans.len());
    let directories: Vec<Directory> = if workers <= 1 {
        plans.iter().map(make).collect()
    } else {
        let chunk = plans.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(make).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| match handle.join() {
                    Ok(part) => part,
                    // The generator does not panic; if it did, fail the start with it.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    };
    plans
        .into_iter()
        .zip(
            directories
                .into_iter()
                .map(|dir| Arc::new(RwLock::new(dir))),
        )
        .collect()
}

fn bind(port: u16) -> Result<TcpListener, Error> {
    let listener =
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map_err(Error::Bind)?;
    listener.set_nonblocking(true).map_err(Error::Bind)?;
    Ok(listener)
}

fn port_of(listener: &TcpListener) -> Result<u16, Error> {
    listener.local_addr().map(|a| a.port()).map_err(Error::Bind)
}

/// The self-signed certificate of a `--tls` simulator, written to a fresh temporary
/// directory that is removed on drop.
#[derive(Debug)]
struct Certificate {
    pem: String,
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn make_certificate() -> Result<(axum_server::tls_rustls::RustlsConfig, Certificate), Error> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| Error::Start(format!("self-signed certificate: {e}")))?;
    let pem = generated.cert.pem();
    let key = generated.signing_key.serialize_pem();
    let dir = std::env::temp_dir().join(format!("tenant-sim-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Start(format!("certificate directory: {e}")))?;
    let path = dir.join("cert.pem");
    std::fs::write(&path, &pem)
        .map_err(|e| Error::Start(format!("writing the certificate: {e}")))?;
    let certificate = Certificate {
        pem: pem.clone(),
        dir,
        path,
    };
    let config =
        axum_server::tls_rustls::RustlsConfig::from_pem(pem.into_bytes(), key.into_bytes())
            .await
            .map_err(|e| Error::Start(format!("TLS configuration: {e}")))?;
    Ok((config, certificate))
}

fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    handle: axum_server::Handle,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service();
        // Both listeners take request targets with bytes `http` refuses, as Graph and
        // Entra do (request_target.rs).
        let result = match tls {
            Some(config) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(config);
                axum_server::from_tcp(listener)
                    .acceptor(LenientAcceptor::new(tls))
                    .handle(handle)
                    .serve(service)
                    .await
            }
            None => {
                axum_server::from_tcp(listener)
                    .acceptor(LenientAcceptor::new(DefaultAcceptor::new()))
                    .handle(handle)
                    .serve(service)
                    .await
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "tenant-sim listener stopped");
        }
    })
}

/// A running simulated tenant: a login listener (Entra v2.0) and a Graph listener
/// (`/v1.0` and the control API under `/_sim`), both on 127.0.0.1. Dropping it stops both
/// listeners accepting at once and gives requests in flight up to 1 s;
/// [`TenantSim::shutdown`] gives them up to 5 s and waits until both have stopped.
pub struct TenantSim {
    login_base: String,
    graph_base: String,
    control_base: String,
    /// Never empty: index 0 is the first tenant.
    tenants: Vec<TenantInfo>,
    client_id: String,
    client_secret: SecretString,
    cert: Option<Certificate>,
    /// One per tenant, in index order.
    controls: Vec<Control>,
    shared: Arc<Shared>,
    entra: Arc<auth::Auth>,
    handles: Vec<axum_server::Handle>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for TenantSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSim")
            .field("login_base", &self.login_base)
            .field("graph_base", &self.graph_base)
            .field("tenant_id", &self.tenant_id())
            .field("tenants", &self.tenants.len())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("admin", &self.admin_upn())
            .finish_non_exhaustive()
    }
}

impl TenantSim {
    /// Settings for a new simulator.
    pub fn builder() -> TenantSimBuilder {
        TenantSimBuilder::default()
    }

    /// The login listener's base, e.g. `http://127.0.0.1:4321` (authority
    /// `{login_base}/{tenant}/v2.0`).
    pub fn login_base(&self) -> &str {
        &self.login_base
    }

    /// The Graph root, e.g. `http://127.0.0.1:4322/v1.0`.
    pub fn graph_base(&self) -> &str {
        &self.graph_base
    }

    /// The control API's base, e.g. `http://127.0.0.1:4322/_sim`.
    pub fn control_base(&self) -> &str {
        &self.control_base
    }

    /// Tenant 0's id (GUID).
    pub fn tenant_id(&self) -> &str {
        self.first().id()
    }

    /// Tenant 0's primary domain.
    pub fn tenant_domain(&self) -> &str {
        self.first().domain()
    }

    /// Every tenant, in index order (tenant 0 first).
    pub fn tenants(&self) -> &[TenantInfo] {
        &self.tenants
    }

    /// The control API of the tenant with this id or domain (case-insensitive).
    pub fn tenant_control(&self, id_or_domain: &str) -> Option<&Control> {
        self.shared
            .tenant_index(id_or_domain)
            .and_then(|index| self.controls.get(index))
    }

    /// Request counters of the whole simulator: every tenant's added up.
    pub fn counters(&self) -> RequestCounters {
        let mut total = RequestCounters::default();
        for control in &self.controls {
            total.add(&control.counters());
        }
        total
    }

    fn first(&self) -> &TenantInfo {
        &self.tenants[0]
    }

    /// The registered app's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The registered app's client secret.
    pub fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    /// Tenant 0's Global Administrator's user principal name.
    pub fn admin_upn(&self) -> &str {
        self.first().admin_upn()
    }

    /// Tenant 0's Global Administrator's object id.
    pub fn admin_id(&self) -> &str {
        self.first().admin_id()
    }

    /// The self-signed certificate (PEM) when started with TLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert.as_ref().map(|c| c.pem.as_str())
    }

    /// Where the certificate PEM was written when started with TLS.
    pub fn cert_pem_path(&self) -> Option<&Path> {
        self.cert.as_ref().map(|c| c.path.as_path())
    }

    /// The in-process control API of tenant 0.
    pub fn control(&self) -> &Control {
        &self.controls[0]
    }

    /// The Entra half, for its own controls (`advance_clock`, `decline_device_code`,
    /// `add_redirect_uri`, `register_client_certificate`, `counters`, ...; see the Entra
    /// section below).
    pub fn auth(&self) -> &Arc<auth::Auth> {
        &self.entra
    }

    /// The binary's first stdout line: one JSON object with `login_base`, `graph_base`,
    /// `control_base`, `tenant_id`, `tenant_domain`, `client_id`, `client_secret`,
    /// `admin`, `admin_id` (those of tenant 0), `tenants` (every tenant's `id`, `domain`,
    /// `admin_upn` and `admin_id`, in index order) and, with TLS, `cert_pem_path`. It
    /// holds the client secret.
    pub fn startup_json(&self) -> serde_json::Value {
        let tenants: Vec<serde_json::Value> = self
            .tenants
            .iter()
            .map(|tenant| {
                serde_json::json!({
                    "id": tenant.id,
                    "domain": tenant.domain,
                    "admin_upn": tenant.admin_upn,
                    "admin_id": tenant.admin_id,
                })
            })
            .collect();
        let mut info = serde_json::json!({
            "login_base": self.login_base,
            "graph_base": self.graph_base,
            "control_base": self.control_base,
            "tenant_id": self.tenant_id(),
            "tenant_domain": self.tenant_domain(),
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose_secret(),
            "admin": self.admin_upn(),
            "admin_id": self.admin_id(),
            "tenants": tenants,
        });
        if let (Some(path), Some(map)) = (self.cert_pem_path(), info.as_object_mut()) {
            map.insert(
                "cert_pem_path".into(),
                serde_json::Value::String(path.display().to_string()),
            );
        }
        info
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), and waits for both
    /// listeners to stop.
    pub async fn shutdown(mut self) {
        for handle in &self.handles {
            handle.graceful_shutdown(Some(Duration::from_secs(5)));
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// One tenant of a running simulator: its id, primary domain and Global Administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantInfo {
    id: String,
    domain: String,
    admin_upn: String,
    admin_id: String,
}

impl TenantInfo {
    /// The tenant id (GUID, the `tid` of its tokens).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The primary domain, e.g. `tenant0001.onmicrosoft.com`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The Global Administrator's user principal name.
    pub fn admin_upn(&self) -> &str {
        &self.admin_upn
    }

    /// The Global Administrator's object id.
    pub fn admin_id(&self) -> &str {
        &self.admin_id
    }
}

impl Drop for TenantSim {
    fn drop(&mut self) {
        // Graceful: stop accepting now, let requests in flight finish (at most 1 s).
        for handle in &self.handles {
            handle.graceful_shutdown(Some(Duration::from_secs(1)));
        }
    }
}

#[cfg(test)]
mod fidelity_tests;
#[cfg(test)]
mod http_tests;
