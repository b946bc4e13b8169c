"""The job platform: submission and every state transition (lifecycle), and the recovery of jobs a
lost worker or message left unfinished (recovery)."""
