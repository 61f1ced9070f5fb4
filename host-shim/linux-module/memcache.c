// SPDX-License-Identifier: MIT
/*
 * The driver's donations to the hyp's memcache, one pool for every client (a
 * /dev/hyp file, a /dev/kvm VM). The hyp keeps one memcache for all VMs, so
 * the pages one client donated may hold another client's VM tables: a
 * client's own chunk cannot always come back when it ends. So a client
 * gives a chunk when it starts, and when it ends the driver takes back every
 * chunk the hyp no longer uses, whoever gave it, down to one per live
 * client; a chunk still in use stays on the list and is tried again at the
 * next end, and at the module's exit (no VM is left then). No donated page is
 * ever forgotten.
 */

#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/slab.h>

#include "hyp_calls.h"

struct memcache_chunk {
	struct list_head link;
	struct page *pages;
};

static LIST_HEAD(chunks);
static DEFINE_MUTEX(chunks_lock);
static unsigned long chunk_count;
static unsigned long clients;

int memcache_client_start(void)
{
	struct memcache_chunk *chunk = kmalloc(sizeof(*chunk), GFP_KERNEL_ACCOUNT);

	if (!chunk)
		return -ENOMEM;
	chunk->pages = alloc_pages(GFP_KERNEL_ACCOUNT | __GFP_ZERO, MEMCACHE_ORDER);
	if (!chunk->pages || hyp_call4(CALL_DONATE_HYP, page_to_phys(chunk->pages), MEMCACHE_PAGES, 0, 0) != 0) {
		if (chunk->pages)
			__free_pages(chunk->pages, MEMCACHE_ORDER);
		kfree(chunk);
		return -ENOMEM;
	}
	mutex_lock(&chunks_lock);
	list_add(&chunk->link, &chunks);
	chunk_count++;
	clients++;
	mutex_unlock(&chunks_lock);
	return 0;
}

/* Takes back free chunks until `keep` remain donated. Under chunks_lock. */
static void take_back(unsigned long keep)
{
	struct memcache_chunk *chunk, *next;

	list_for_each_entry_safe(chunk, next, &chunks, link) {
		if (chunk_count <= keep)
			break;
		/* Busy while the hyp uses a page of it (some live VM's tables): tried again later. */
		if (hyp_call4(CALL_RECLAIM_HYP, page_to_phys(chunk->pages), MEMCACHE_PAGES, 0, 0) != 0)
			continue;
		list_del(&chunk->link);
		chunk_count--;
		__free_pages(chunk->pages, MEMCACHE_ORDER);
		kfree(chunk);
	}
}

void memcache_client_end(void)
{
	mutex_lock(&chunks_lock);
	clients--;
	take_back(clients);
	mutex_unlock(&chunks_lock);
}

void memcache_release_all(void)
{
	mutex_lock(&chunks_lock);
	take_back(0);
	if (chunk_count)
		pr_warn("hyp: %lu memcache chunks not returned by the hyp; their pages stay out of use\n",
			chunk_count);
	mutex_unlock(&chunks_lock);
}

unsigned long memcache_donated_pages(void)
{
	unsigned long pages;

	mutex_lock(&chunks_lock);
	pages = chunk_count * MEMCACHE_PAGES;
	mutex_unlock(&chunks_lock);
	return pages;
}
