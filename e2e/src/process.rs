//! A child process that a test owns: killed when the handle drops, so a failing test leaves
//! no operator or webhook behind.

use std::process::{Child, ExitStatus};

pub struct Process(Child);

impl Process {
    pub fn new(child: Child) -> Self {
        Process(child)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Kill it at once (a crash, as far as the cluster can tell).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
