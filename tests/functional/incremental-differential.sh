#!/usr/bin/env bash
# The chain of incremental-chain.sh with differentials (bitmap-mode never): each archive
# is relative to the full one, the bitmap keeps growing from it.
MODE=never exec bash "$(dirname "$0")/incremental-chain.sh"
