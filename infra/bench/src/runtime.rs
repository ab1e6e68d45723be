//! A small Lambda Runtime API emulator: what Lambda offers a custom runtime
//! (`/2018-06-01/runtime/invocation/next`, `.../{id}/response`,
//! `.../{id}/error`, `/init/error`), one per function process, so a
//! release binary starts and runs exactly as it does in Lambda. It times
//! init (spawn to the first `next`), each invocation (the event handed over
//! to the response posted) and reads the process's peak RSS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

/// One event for the function.
struct Invocation {
    id: String,
    body: String,
    deadline_ms: u128,
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    Response(serde_json::Value),
    Error(String),
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Option<mpsc::Receiver<Invocation>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<(Instant, Outcome)>>>,
    first_next: std::sync::Mutex<Option<Instant>>,
    ready: Notify,
    init_error: std::sync::Mutex<Option<String>>,
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    {
        let mut first = sandbox::kit::lock(&s.first_next);
        if first.is_none() {
            *first = Some(Instant::now());
            s.ready.notify_waiters();
        }
    }
    let invocation = {
        let mut queue = s.queue.lock().await;
        match queue.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }
    };
    let Some(inv) = invocation else {
        // No more events: the process is about to be stopped.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", inv.id.clone());
    put("lambda-runtime-deadline-ms", inv.deadline_ms.to_string());
    put(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
    );
    put("lambda-runtime-trace-id", format!("Root=1-{}", inv.id));
    put("content-type", "application/json".into());
    (headers, inv.body).into_response()
}

async fn finish(s: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    if let Some(tx) = s.pending.lock().await.remove(id) {
        let _ = tx.send((Instant::now(), outcome));
    }
    StatusCode::ACCEPTED
}

async fn response(
    State(s): State<Arc<Shared>>,
    AxPath(id): AxPath<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    finish(&s, &id, Outcome::Response(value)).await
}

async fn error(
    State(s): State<Arc<Shared>>,
    AxPath(id): AxPath<String>,
    body: Bytes,
) -> StatusCode {
    finish(
        &s,
        &id,
        Outcome::Error(String::from_utf8_lossy(&body).into_owned()),
    )
    .await
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *sandbox::kit::lock(&s.init_error) = Some(String::from_utf8_lossy(&body).into_owned());
    s.ready.notify_waiters();
    StatusCode::ACCEPTED
}

/// One function process under the emulator.
pub struct Instance {
    pub name: String,
    child: tokio::process::Child,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Invocation>,
    /// Spawn to the first `next`: the runtime's init.
    pub init: Duration,
    timeout: Duration,
}

impl Instance {
    /// Starts `program` (with `args`) as Lambda would, with `env`, and waits
    /// for its first `next` (its init done).
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        memory_mb: u32,
        timeout: Duration,
    ) -> Result<Instance, String> {
        let (tx, rx) = mpsc::channel(16);
        let shared = Arc::new(Shared::default());
        *shared.queue.lock().await = Some(rx);
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let signal = shared.clone();
        let ready = signal.ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let spawned = Instant::now();
        let child = tokio::process::Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            // Its own credentials: the access key id names the function, so
            // the IAM check holds its calls to its policy (devstack::iam).
            .env("AWS_ACCESS_KEY_ID", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .is_err()
        {
            return Err(format!("{name}: no first `next` within 30 s"));
        }
        if let Some(e) = shared
            .init_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(format!("{name}: init error {e}"));
        }
        let first = shared
            .first_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Instant::now);
        Ok(Instance {
            name: name.to_string(),
            child,
            shared,
            tx,
            init: first.duration_since(spawned),
            timeout,
        })
    }

    /// One invocation: the time from handing the event over (the process
    /// waits in `next`) to the response, and the response.
    pub async fn invoke(&self, event: &serde_json::Value) -> Result<(Duration, Outcome), String> {
        let id = ulid::Ulid::new().to_string();
        let (done_tx, done_rx) = oneshot::channel();
        self.shared.pending.lock().await.insert(id.clone(), done_tx);
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            + self.timeout.as_millis();
        self.tx
            .send(Invocation {
                id: id.clone(),
                body: event.to_string(),
                deadline_ms,
            })
            .await
            .map_err(|_| format!("{}: the process stopped", self.name))?;
        let handed = Instant::now();
        let (ended, outcome) = tokio::time::timeout(self.timeout + Duration::from_secs(5), done_rx)
            .await
            .map_err(|_| format!("{}: no answer in time", self.name))?
            .map_err(|_| format!("{}: invocation dropped", self.name))?;
        Ok((ended.duration_since(handed), outcome))
    }

    /// The process's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
