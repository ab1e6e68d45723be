//! `cargo run -p sandbox`: serve every provider's sandbox on
//! `PAYGATE_SANDBOX_ADDR` (default 127.0.0.1:9000).

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let addr = std::env::var("PAYGATE_SANDBOX_ADDR").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sandbox: PAYGATE_SANDBOX_ADDR {addr:?}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match sandbox::start(addr).await {
        Ok(running) => {
            println!("sandbox listening on {}", running.url());
            println!("  DirectPay: {}/directpay/api", running.url());
            std::future::pending::<()>().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sandbox: cannot listen on {addr}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
