"""Chat delivery beside email: Slack incoming webhooks (and the PDF through the Slack
Web API) and Microsoft Teams Workflows webhooks.

The stages are email's: a report's summary becomes a neutral ``ChatMessage``
(``message``, pure), then each platform's payload (``slack``, ``teams``, pure),
written to JSON beside the ``.eml`` (``files``), then posted through the ledger's
write-ahead marks (``deliver``, ``post``). Each channel is a ledger recipient
(``slack:<VARIABLE>``, ``teams:<VARIABLE>``, ``slack-upload:<channel>``): the name
of the variable that holds the webhook URL, never the URL.
"""
