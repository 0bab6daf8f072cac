"""Hub helpers of effhub: the local hub server, pushing a run folder, browsing models, model cards.

Import the sub-modules (`effhub.hub.server`, `effhub.hub.publish`, `effhub.hub.browse`, `effhub.hub.cards`) directly;
this package itself imports nothing heavy so that `effhub hub serve` starts fast.
"""

__all__: list[str] = []
