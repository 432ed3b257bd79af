from livedb import define_schema, define_table, v

schema = define_schema({
    "messages": define_table({"channel": v.string(), "author": v.string(), "body": v.string()})
    .index("by_channel", ["channel"]),
    "counters": define_table({"name": v.string(), "value": v.int64()}).index("by_name", ["name"]),
    "things": define_table(v.any()),
})
