//! Plays one file through any output, printing the player's events.
//!
//! ```sh
//! cargo run -p firefly-player --example play -- FILE [OUTPUT] [START_FRAME]
//! ```
//!
//! `OUTPUT` is one of `default`, `device:NAME`, `virtual`, `wav:PATH`
//! (default: `virtual`). Playback starts half a second after launch, at
//! `START_FRAME` (default 0), and the example exits when the track ends.

use firefly_player::{LinearTimeline, OutputChoice, Player, PlayerConfig, PlayerEvent, Timeline};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("play: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        return Err("usage: play FILE [OUTPUT] [START_FRAME]".into());
    };
    let choice: OutputChoice = args.next().as_deref().unwrap_or("virtual").parse()?;
    let start_frame: u64 = match args.next() {
        Some(frame) => frame.parse()?,
        None => 0,
    };
    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    let mut player = Player::start(choice.open()?, timeline.clone(), PlayerConfig::default())?;
    let track = player.open_file(std::path::Path::new(&file))?;
    println!("{:?} via {choice:?} at {:?}", track.info(), player.format());
    let at = timeline.to_swarm(timeline.now()) + 500_000;
    let id = player.play(track, start_frame, at)?;
    let mut flashes = 0u64;
    loop {
        match player.wait_event(Duration::from_secs(5))? {
            Some(PlayerEvent::Flash(flash)) => {
                flashes += 1;
                if flashes % 100 == 1 {
                    println!(
                        "flash: frame {} at swarm {} µs (error {:+.2} frames)",
                        flash.frame,
                        flash.swarm.as_micros(),
                        flash.error_frames
                    );
                }
            }
            Some(PlayerEvent::Finished { track }) if track == id => break,
            Some(other) => println!("{other:?}"),
            None => return Err("no event for 5 s: the output seems stuck".into()),
        }
    }
    player.shutdown()?;
    Ok(())
}
