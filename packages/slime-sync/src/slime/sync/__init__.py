"""slime.sync: Weight transport from trainers to engines: bucket planning, colocated / broadcast / disk / delta transports."""
