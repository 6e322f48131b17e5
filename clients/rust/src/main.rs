//! `chat`: the command-line chat client.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = chat_client::cli::Cli::parse();
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    chat_client::cli::run(cli, input, std::io::stdout()).await
}
