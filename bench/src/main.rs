//! `chat-bench`: parse the command line, run the scenarios, exit non-zero
//! when a check failed. Everything else lives in the library.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = chat_bench::cli::Cli::parse();
    match chat_bench::run(cli).await {
        Ok(outcome) if outcome.passed() => std::process::ExitCode::SUCCESS,
        Ok(outcome) => {
            eprintln!("chat-bench: FAILED: {}", outcome.failures().join("; "));
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("chat-bench: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
