"""The job platform: submission (submission), every state change after it (transitions), reading jobs
(lookup), an organization's share of the workers (share), and the recovery of jobs a lost worker or
message left unfinished (recovery)."""
