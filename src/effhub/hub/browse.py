"""List models on a Hub with the headline metrics of their cards' `model-index`."""

from __future__ import annotations

from .publish import hub_errors, resolve_endpoint

TABLE_COLUMNS = ("model", "task", "dataset", "metric", "value")


def headline_metrics(card_data) -> list[dict]:
    """The first metric per (task, dataset) of a card's `model-index`, in card order: the metrics the local hub's
    list page shows for the model (`effhub.hub.pages.headline_rows`).

    Args:
        card_data (`huggingface_hub.ModelCardData` or `dict` or `None`): the card metadata of a model.

    Returns:
        `list[dict]`: `{"task", "dataset", "metric", "value"}` entries (empty when the card has no results).
    """
    from .pages import headline_rows, metric_rows

    if card_data is None:
        return []
    if not isinstance(card_data, dict):
        card_data = card_data.to_dict()
    return [{key: row[key] for key in ("task", "dataset", "metric", "value")}
            for row in headline_rows(metric_rows(card_data))]


def browse_models(endpoint: str | None = None, search: str | None = None, library: str | None = "effhub",
                  tag: str | None = None, limit: int = 50) -> list[dict]:
    """List the models of a Hub (the local hub or any endpoint) with their headline metrics.

    Args:
        endpoint (`str`, *optional*): Hub URL; defaults to `HF_ENDPOINT`, then huggingface_hub's default.
        search (`str`, *optional*): substring of the repo id.
        library (`str`, *optional*, defaults to `"effhub"`): keep models whose card declares this `library_name`
            (the Hub indexes it as a tag); `None` keeps every library.
        tag (`str`, *optional*): keep models carrying this tag.
        limit (`int`, *optional*, defaults to 50): at most this many models.

    Returns:
        `list[dict]`: one row per model: `id`, `library`, `pipeline_tag`, `tags`, `last_modified` (ISO string or
        `None`) and `metrics` (see `headline_metrics`).

    Raises:
        `OfflineError`: the endpoint is unreachable or `HF_HUB_OFFLINE` is set.
        `HubError`: the Hub refused the listing.
    """
    from huggingface_hub import HfApi

    from ..errors import ConfigError

    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"Invalid limit {limit!r} for browsing models", "pass a positive integer")
    endpoint = resolve_endpoint(endpoint)
    filters = [value for value in (library, tag) if value]
    rows = []
    with hub_errors(endpoint, "list the models"):
        _check_reachable(endpoint)
        for model in HfApi(endpoint=endpoint).list_models(search=search or None, filter=filters or None,
                                                          cardData=True, limit=limit):
            card_data = model.card_data
            rows.append({
                "id": model.id,
                "library": model.library_name or getattr(card_data, "library_name", None),
                "pipeline_tag": model.pipeline_tag,
                "tags": list(model.tags or []),
                "last_modified": model.last_modified.isoformat() if model.last_modified else None,
                "metrics": headline_metrics(card_data),
            })
    return rows


def _check_reachable(endpoint: str) -> None:
    """Fail fast on a dead endpoint: `list_models` retries connection errors with back-off for about 20 s."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if not constants.HF_HUB_OFFLINE:  # offline mode is reported by the client itself
        get_session().head(endpoint, timeout=10)  # any HTTP answer will do; only transport errors matter


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def format_table(rows: list[dict]) -> str:
    """A plain text table of `browse_models` rows: one line per headline metric (`-` for a model with none)."""
    if not rows:
        return "no models found"
    lines = []
    for row in rows:
        metrics = row.get("metrics") or [{}]
        for index, metric in enumerate(metrics):
            lines.append((row["id"] if index == 0 else "", *(_format_value(metric.get(key))
                                                             for key in ("task", "dataset", "metric", "value"))))
    widths = [max(len(str(cell)) for cell in column) for column in zip(TABLE_COLUMNS, *lines)]

    def render(cells) -> str:
        # numbers right-aligned in the last column, text left-aligned
        parts = [str(cell).ljust(width) for cell, width in zip(cells[:-1], widths[:-1])]
        return "  ".join([*parts, str(cells[-1]).rjust(widths[-1])]).rstrip()

    separator = "  ".join("-" * width for width in widths)
    return "\n".join([render(TABLE_COLUMNS), separator, *(render(line) for line in lines)])


__all__ = ["browse_models", "format_table", "headline_metrics"]
