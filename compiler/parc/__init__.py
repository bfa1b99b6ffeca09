"""parc: a declarative config-compiler for LLM serving.

Pipeline (one module per stage): ``loader`` -> ``validate`` (models in ``spec``) ->
``resolve`` -> ``solver`` (cost model in ``costmodel``) -> ``plan`` -> ``render`` -> ``write``.
"""

__version__ = "0.1.0"
