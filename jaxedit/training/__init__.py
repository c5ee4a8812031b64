"""Training: unjitted pure update steps (`steps`), the loop (`loop`), checkpointing (`checkpoint`),
sharding over a device mesh (`sharding`), configs (`configs`), data (`data`), the two stages
(`classifier`, `transformers`) and the whole pipeline on the synthetic world (`pipeline`)."""
