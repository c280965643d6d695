"""What every reader of a user's files shares: open only regular files, parse JSON within limits.

Used by the readers (`sources`), the architecture card and the results store alike, so it sits
below all of them and imports nothing of tailscope but its errors.
"""
