//! `cargo run -p sandbox`: serve every provider's sandbox on
//! `PAYGATE_SANDBOX_ADDR` (default 127.0.0.1:8900). Paygram keeps its
//! callback URL per merchant: `PAYGATE_SANDBOX_PAYGRAM_CALLBACK_URL` sets it.

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let addr = std::env::var("PAYGATE_SANDBOX_ADDR").unwrap_or_else(|_| "127.0.0.1:8900".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sandbox: PAYGATE_SANDBOX_ADDR {addr:?}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match sandbox::start(addr).await {
        Ok(running) => {
            if let Ok(url) = std::env::var("PAYGATE_SANDBOX_PAYGRAM_CALLBACK_URL") {
                running.state.paygram.set_callback_url(url);
            }
            if let Ok(url) = std::env::var("PAYGATE_SANDBOX_PAYMENT_ENGINE_WEBHOOK_URL") {
                running.state.payment_engine.set_webhook_url(url);
            }
            println!("sandbox listening on {}", running.url());
            println!("  DirectPay: {}/directpay/api", running.url());
            println!("  Paygram:   {}/paygram", running.url());
            println!("  Casino:    {}/casino", running.url());
            println!("  Controls:  {}/_sandbox/...", running.url());
            std::future::pending::<()>().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sandbox: cannot listen on {addr}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
