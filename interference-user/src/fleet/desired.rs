//! The desired state: pulled from the controller with a long poll (ETag), saved in the
//! state directory (`desired.json`: a restart without a controller runs on it,
//! fail-static), its models prepared ([`super::assign`]), then queued for the tick
//! loop, which applies it between ticks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interference_fleet::client::{Backoff, FleetClient, RetryPolicy};
use interference_fleet::wire::DesiredState;

use super::assign::{Assigner, ModelSwitch};

/// The desired state saved in the state directory: what a restart runs on.
pub const DESIRED_FILE: &str = "desired.json";

/// How often a bundle that could not be fetched or loaded is tried again while the
/// desired state stays the same.
const RETRY_MODELS: Duration = Duration::from_secs(30);

/// A desired state and the model changes it brings, ready for the tick loop.
#[derive(Debug)]
pub struct Prepared {
    pub state: DesiredState,
    pub models: ModelSwitch,
}

/// Where the link leaves a prepared state for the tick loop.
pub(super) type Slot = Arc<Mutex<Option<Prepared>>>;

/// Queues `next`; a state the tick loop has not taken yet is replaced, its model
/// changes kept where `next` has none.
pub(super) fn hand_over(slot: &Slot, next: Prepared) {
    if let Ok(mut s) = slot.lock() {
        let models = match s.take() {
            Some(old) => old.models.then(next.models),
            None => next.models,
        };
        *s = Some(Prepared {
            state: next.state,
            models,
        });
    }
}

/// The saved state with its models loaded from disk, if there is one.
pub(super) fn saved(dir: &Path, assigner: &mut Assigner) -> Option<Prepared> {
    let state = load(dir)?;
    let models = assigner.switch(&state.model);
    Some(Prepared { state, models })
}

/// The long poll: each new state is saved, its models fetched and checked, then
/// queued for the tick loop.
pub(super) async fn poll(
    client: FleetClient,
    slot: Slot,
    state_dir: PathBuf,
    mut assigner: Assigner,
) {
    let mut etag: Option<String> = None;
    let mut last: Option<DesiredState> = None;
    let mut backoff = Backoff::new(RetryPolicy::default());
    let mut next_retry = tokio::time::Instant::now() + RETRY_MODELS;
    loop {
        match client.desired(etag.as_deref()).await {
            Ok(Some(state)) => {
                backoff.reset();
                etag = Some(state.etag.clone());
                if let Err(e) = save(&state_dir, &state) {
                    tracing::warn!(
                        "saving the desired state in {}: {e} (applied all the same)",
                        state_dir.display()
                    );
                }
                tracing::info!("controller: desired policy {}", state.policy.version);
                assigner.fetch(&client, &state.model).await;
                let models = assigner.switch(&state.model);
                hand_over(
                    &slot,
                    Prepared {
                        state: state.clone(),
                        models,
                    },
                );
                last = Some(state);
            }
            Ok(None) => backoff.reset(),
            Err(e) => {
                tracing::debug!("controller link: desired state: {e:#}");
                tokio::time::sleep(backoff.next_delay(e.retry_after())).await;
            }
        }
        // A bundle refused for want of a download is tried again now and then.
        if let Some(state) = last.as_ref().filter(|s| !assigner.settled(&s.model)) {
            if tokio::time::Instant::now() >= next_retry {
                next_retry = tokio::time::Instant::now() + RETRY_MODELS;
                assigner.fetch(&client, &state.model).await;
                let models = assigner.switch(&state.model);
                if models.active.is_some() || models.shadow.is_some() {
                    hand_over(
                        &slot,
                        Prepared {
                            state: state.clone(),
                            models,
                        },
                    );
                }
            }
        }
    }
}

fn save(dir: &Path, state: &DesiredState) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{DESIRED_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string(state)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(DESIRED_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The saved desired state, if any (an unreadable one is reported and ignored).
fn load(dir: &Path) -> Option<DesiredState> {
    let path = dir.join(DESIRED_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    serde_json::from_str(&text)
        .map_err(|e| tracing::warn!("{}: not a desired state, ignored: {e}", path.display()))
        .ok()
}
