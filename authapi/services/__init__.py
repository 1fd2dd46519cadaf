"""Business logic by concern. Services take plain values, return models or
plain data, own their transactions and raise ``authapi.errors.APIError``."""
