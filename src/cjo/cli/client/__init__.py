"""`cjo apply`, `cjo campaign ...` and `cjo event`: the command line as a client of the API.

Like kubectl, these commands talk to a running API: `--api` (else CJO_API_URL, else
http://127.0.0.1:8000) with a key (`--api-key`, else CJO_API_KEY, else the admin key that
`cjo dev` keeps in $CJO_HOME/dev-admin-key). They print readable tables, or with `--json`
the API's answer as it is. Exit codes: 0 done; 1 the API refused or failed (its problem
is shown on stderr); 2 a usage error, or no answer from the API.

    api.py        the connection, its options (`with_api`), the API's problems as errors
    text.py       tables and other text for people
    apply.py      `cjo apply`
    campaign.py   `cjo campaign create|list|get|submit|approve|reject|launch|...|stats`
    event.py      `cjo event`
"""

from cjo.cli.client.apply import apply_command
from cjo.cli.client.campaign import campaign_group
from cjo.cli.client.event import event_command

__all__ = ["apply_command", "campaign_group", "event_command"]
