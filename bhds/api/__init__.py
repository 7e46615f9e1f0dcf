"""The Binance REST API: client, rate limiter, missing-day detection, response conversion.

Nothing here prints or touches Click; the `api_data` workflow drives it.
"""
