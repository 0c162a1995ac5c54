"""The agent's side of remediation: carry out what a NodeRemediation asks of this node.

`actions` runs the host commands (restart a runtime, reboot, SIGUSR1 goroutine dump), each with
`dry_run`; `executor` finds NodeRemediations in ActionRequested for its node and reports back.
It shares only the contract in `nodeprobe.model` with the operator, never its modules.
"""
