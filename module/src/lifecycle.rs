//! What the module does when Asterisk's loader drives it: load (settings, the ticker, the
//! application, CLI command and AMI actions), unload (refused, and the library pinned, while any
//! call is watched), reload (settings), and what is left after a forced unload. The loader finds
//! the module through [`crate::declare_module!`] (see `asterisk/module.rs`).

use crate::app::Handoff;
use crate::asterisk::module::Lifecycle;
use crate::asterisk::{self, application, cli, manager, Level, Module};
use crate::cli::ShowStatus;
use crate::config::{self, ModuleConfig, CONFIG_FILE};
use crate::ticker::{self, Work};
use crate::{groups, legs, media, residency, secret};
use std::sync::atomic::{AtomicBool, Ordering};

crate::declare_module!(
    ResHandoff,
    name: c"res_handoff",
    description: c"handoff: calls that survive network loss and move between devices",
    self_symbol: __internal_res_handoff_self
);

/// The module, as the loader drives it.
pub struct ResHandoff;

/// What the ticker runs: the device groups' clocks every tick, the forced-unload check once a
/// second.
const WORK: Work = Work { every_tick: groups::tick, every_second: after_forced_unload };

/// Reads handoff.conf; a missing file means the defaults, a bad value keeps the previous one.
fn load_config() -> ModuleConfig {
    let mut cfg = config::current();
    match asterisk::read_config_section(CONFIG_FILE, "general") {
        asterisk::ConfigFile::Missing => {
            asterisk::log(Level::Notice, &format!("{CONFIG_FILE} not found; using defaults (copy handoff.conf.sample to it)"))
        }
        asterisk::ConfigFile::Invalid => asterisk::log(
            Level::Error,
            &format!("{CONFIG_FILE} could not be parsed (see the config loader's message above); keeping the previous settings"),
        ),
        asterisk::ConfigFile::Section(vars) => {
            for e in cfg.apply(CONFIG_FILE, &vars) {
                asterisk::log(Level::Error, &e);
            }
        }
    }
    cfg
}

impl Lifecycle for ResHandoff {
    fn load(module: Module) -> Result<(), ()> {
        crate::guard::install_quiet_panic_hook();
        config::replace(load_config());
        // After a forced unload the library stayed mapped (see residency.rs) with its ticker and
        // registrations alive; a new load starts them afresh.
        if residency::pinned() {
            unregister_all();
            ticker::stop();
        }
        media::CLOSING.store(false, Ordering::SeqCst);
        if let Err(why) = ticker::start(WORK) {
            asterisk::log(Level::Error, &format!("{why}; declining to load"));
            return Err(());
        }
        if let Err(what) = register_all(module) {
            asterisk::log(Level::Error, &format!("cannot register {what}; declining to load"));
            unregister_all();
            ticker::stop();
            return Err(());
        }
        asterisk::log(Level::Notice, &format!("res_handoff {} loaded", env!("CARGO_PKG_VERSION")));
        Ok(())
    }

    fn unload(_module: Module) -> Result<(), ()> {
        // From here on no hook is attached and no leg enters Handoff() (both check CLOSING), so
        // the counts read below cannot grow behind the check.
        media::CLOSING.store(true, Ordering::SeqCst);
        let waiting = legs::registry().waiting();
        let hooks = media::HOOKS_ATTACHED.load(Ordering::SeqCst);
        if waiting > 0 || hooks > 0 {
            media::CLOSING.store(false, Ordering::SeqCst);
            // `module unload -h` goes on whatever we answer and dlcloses the library: with hooks
            // on live channels, the ticker and our registrations pointing into it, Asterisk
            // would jump into unmapped code. Pinned, the library stays and the calls go on.
            let pinned = match residency::pin() {
                Ok(_) => {
                    "the module stays in memory even if the unload is forced (-h), so live calls keep their failover"
                }
                Err(why) => {
                    asterisk::log(Level::Error, &format!("cannot pin res_handoff.so in memory: {why}"));
                    "DO NOT force the unload (-h): the module could not pin itself in memory"
                }
            };
            let what = if waiting > 0 {
                format!("{waiting} channel(s) are inside Handoff()")
            } else {
                format!("{hooks} channel(s) are watched by handoff frame hooks")
            };
            asterisk::log(
                Level::Warning,
                &format!("{what}; refusing to unload until those calls end (hang them up or wait); {pinned}"),
            );
            return Err(());
        }
        unregister_all();
        ticker::stop();
        legs::registry().forget_controller();
        crate::guard::remove_panic_hook();
        asterisk::log(Level::Notice, "res_handoff unloaded");
        Ok(())
    }

    fn reload(_module: Module) -> Result<(), ()> {
        let cfg = load_config();
        config::replace(cfg.clone());
        asterisk::log(
            Level::Notice,
            &format!(
                "res_handoff reloaded: assign_timeout={} ms, controller_timeout={} s, stall_threshold={} ms, stall_threshold_max={} ms, recover_time={} ms, controller_account={}",
                cfg.assign_timeout_ms, cfg.controller_timeout_s, cfg.stall_threshold_ms, cfg.stall_threshold_max_ms, cfg.recover_time_ms, cfg.controller_account
            ),
        );
        Ok(())
    }
}

/// Whether the application, CLI command and AMI actions are registered.
static REGISTERED: AtomicBool = AtomicBool::new(false);

fn register_all(module: Module) -> Result<(), &'static str> {
    REGISTERED.store(true, Ordering::SeqCst);
    application::register::<Handoff>(module).map_err(|_| "the Handoff application")?;
    cli::register::<ShowStatus>(module).map_err(|_| "the CLI commands")?;
    crate::manager::register(module).map_err(|_| "the AMI actions")?;
    manager::register::<secret::Fetch>(module).map_err(|_| "the AMI action HandoffSecret")?;
    Ok(())
}

fn unregister_all() {
    REGISTERED.store(false, Ordering::SeqCst);
    manager::unregister::<secret::Fetch>();
    crate::manager::unregister();
    cli::unregister::<ShowStatus>();
    application::unregister::<Handoff>();
}

/// Run by the ticker about once a second. After a forced unload (the library pinned itself, and
/// the loader no longer counts it as running) nothing of the module should stay reachable by
/// name: Asterisk closes the AMI session of anyone who sends an action of a module that is not
/// running, which would cut handoffd off in a loop. So the application, CLI command and AMI
/// actions go; the frame hooks and the ticker stay until the calls end (or a new load).
fn after_forced_unload() {
    if !residency::pinned() || !REGISTERED.load(Ordering::SeqCst) || Module::this().running() {
        return;
    }
    unregister_all();
    legs::registry().forget_controller();
    asterisk::log(
        Level::Warning,
        "res_handoff was unloaded by force: Handoff(), its CLI and AMI actions are gone; live calls keep their frame hooks until they end; 'module load res_handoff.so' brings it back",
    );
}
